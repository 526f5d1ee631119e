// Tensor <-> checkpoint entry conversion (see checkpoint.hpp).
#include "engine/checkpoint.hpp"

#include "engine/device.hpp"

#include <stdexcept>

namespace sigmar {

namespace {
const char* file_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
  }
  return "?";
}
}  // namespace

NamedBuffer to_buffer(const std::string& name, const Tensor& t) {
  NamedBuffer b;
  b.name = name;
  b.dtype = file_dtype(t.dtype());
  b.shape = t.shape();
  b.bytes.resize(t.nbytes());
  device::copy(b.bytes.data(), Device::cpu, t.raw(), t.device(), t.nbytes());
  return b;
}

void load_into(const TensorFile& file, const std::string& name, Tensor& dst) {
  const NamedBuffer& b = file.get(name);
  if (b.dtype != file_dtype(dst.dtype()) || Shape(b.shape) != dst.shape()) {
    throw std::runtime_error(file.path + ": entry '" + name + "' is " + b.dtype + " " +
                             shape_str(b.shape) + " but this run needs " +
                             file_dtype(dst.dtype()) + " " + shape_str(dst.shape()) +
                             "; was the checkpoint written by a run with another model or loss?");
  }
  device::copy(dst.raw(), dst.device(), b.bytes.data(), Device::cpu, dst.nbytes());
}

}  // namespace sigmar
