// Tensor storage, construction, host copies and gradient bookkeeping (see tensor.hpp).
#include "engine/tensor.hpp"

#include "engine/backend.hpp"
#include "engine/device.hpp"

#include <cstring>
#include <sstream>
#include <stdexcept>

namespace sigmar {

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

size_t dtype_size(DType t) { return t == DType::u8 ? 1 : 4; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::i32: return "i32";
    case DType::u8: return "u8";
  }
  return "?";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape " + shape_str(s));
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

Storage::Storage(size_t bytes_, Device device_) : bytes(bytes_), device(device_) {
  ptr = device::alloc(bytes, device);
}

Storage::~Storage() { device::release(ptr, bytes, device); }

// ---- construction ----------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, Device dev, DType dtype) {
  Tensor t;
  t.impl_ = std::make_shared<TensorImpl>();
  t.impl_->shape = shape;
  t.impl_->dtype = dtype;
  t.impl_->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), dev);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, Device dev, DType dtype) {
  Tensor t = empty(shape, dev, dtype);
  device::zero(t.raw(), t.nbytes(), dev);
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device dev) {
  Tensor t = empty(shape, Device::cpu);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = value;
  return t.to(dev);
}

namespace {
template <typename T>
Tensor from_values(const std::vector<T>& values, const Shape& shape, Device dev, DType dtype) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape)) {
    throw std::invalid_argument("Tensor::from: " + std::to_string(values.size()) +
                                " values do not fill shape " + shape_str(shape));
  }
  Tensor t = Tensor::empty(shape, Device::cpu, dtype);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(T));
  return t.to(dev);
}
}  // namespace

Tensor Tensor::from(const std::vector<float>& v, const Shape& s, Device d) {
  return from_values(v, s, d, DType::f32);
}
Tensor Tensor::from_i32(const std::vector<int32_t>& v, const Shape& s, Device d) {
  return from_values(v, s, d, DType::i32);
}
Tensor Tensor::from_u8(const std::vector<uint8_t>& v, const Shape& s, Device d) {
  return from_values(v, s, d, DType::u8);
}

// ---- accessors -------------------------------------------------------------------------

namespace {
const TensorImpl& need(const std::shared_ptr<TensorImpl>& p) {
  if (!p) throw std::logic_error("use of an undefined tensor");
  return *p;
}
}  // namespace

const Shape& Tensor::shape() const { return need(impl_).shape; }
int64_t Tensor::ndim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::dim(int i) const {
  int64_t n = ndim();
  int64_t k = i < 0 ? n + i : i;
  if (k < 0 || k >= n) {
    throw std::out_of_range("dim " + std::to_string(i) + " of shape " + shape_str(shape()));
  }
  return shape()[k];
}
int64_t Tensor::numel() const { return shape_numel(shape()); }
Device Tensor::device() const { return need(impl_).storage->device; }
DType Tensor::dtype() const { return need(impl_).dtype; }
size_t Tensor::nbytes() const { return numel() * dtype_size(dtype()); }

void* Tensor::raw() {
  Storage& st = *need(impl_).storage;
  ++st.version;  // the caller may write through this pointer
  return static_cast<char*>(st.ptr) + impl_->offset_bytes;
}
const void* Tensor::raw() const {
  return static_cast<const char*>(need(impl_).storage->ptr) + impl_->offset_bytes;
}

namespace {
void expect_dtype(const Tensor& t, DType want) {
  if (t.dtype() != want) {
    throw std::invalid_argument(std::string("tensor of dtype ") + dtype_name(t.dtype()) +
                                " used as " + dtype_name(want));
  }
}
}  // namespace

float* Tensor::data() { expect_dtype(*this, DType::f32); return static_cast<float*>(raw()); }
const float* Tensor::data() const {
  expect_dtype(*this, DType::f32);
  return static_cast<const float*>(raw());
}
int32_t* Tensor::data_i32() {
  expect_dtype(*this, DType::i32);
  return static_cast<int32_t*>(raw());
}
const int32_t* Tensor::data_i32() const {
  expect_dtype(*this, DType::i32);
  return static_cast<const int32_t*>(raw());
}
uint8_t* Tensor::data_u8() { expect_dtype(*this, DType::u8); return static_cast<uint8_t*>(raw()); }
const uint8_t* Tensor::data_u8() const {
  expect_dtype(*this, DType::u8);
  return static_cast<const uint8_t*>(raw());
}

// ---- copies ----------------------------------------------------------------------------

std::vector<float> Tensor::to_vector() const {
  expect_dtype(*this, DType::f32);
  std::vector<float> out(numel());
  device::copy(out.data(), Device::cpu, raw(), device(), nbytes());
  return out;
}

std::vector<int32_t> Tensor::to_vector_i32() const {
  expect_dtype(*this, DType::i32);
  std::vector<int32_t> out(numel());
  device::copy(out.data(), Device::cpu, raw(), device(), nbytes());
  return out;
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor t = empty(shape(), dev, dtype());
  device::copy(t.raw(), dev, raw(), device(), nbytes());
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), device(), dtype());
  device::copy(t.raw(), device(), raw(), device(), nbytes());
  return t;
}

void Tensor::copy_from(const Tensor& src) {
  if (src.numel() != numel() || src.dtype() != dtype()) {
    throw std::invalid_argument("copy_from: " + shape_str(src.shape()) + " into " +
                                shape_str(shape()));
  }
  device::copy(raw(), device(), src.raw(), src.device(), nbytes());
}

void Tensor::fill(float value) {
  if (device() == Device::cpu) {
    float* p = data();
    for (int64_t i = 0; i < numel(); ++i) p[i] = value;
  } else {
    backend_of(*this).fill(*this, value);
  }
}

Tensor Tensor::view(const Shape& s) const {
  if (shape_numel(s) != numel()) {
    throw std::invalid_argument("view: cannot view " + shape_str(shape()) + " as " +
                                shape_str(s));
  }
  Tensor t;
  t.impl_ = std::make_shared<TensorImpl>();
  t.impl_->shape = s;
  t.impl_->dtype = dtype();
  t.impl_->storage = impl_->storage;
  t.impl_->offset_bytes = impl_->offset_bytes;
  return t;
}

Tensor Tensor::view_at(int64_t offset, const Shape& s) const {
  if (offset < 0 || offset + shape_numel(s) > numel()) {
    throw std::out_of_range("view_at: " + shape_str(s) + " at offset " + std::to_string(offset) +
                            " does not fit in " + shape_str(shape()));
  }
  Tensor t = view(shape());
  t.impl_->shape = s;
  t.impl_->offset_bytes += offset * dtype_size(dtype());
  return t;
}

void Tensor::move_into(const Tensor& target) {
  if (target.shape() != shape() || target.dtype() != dtype()) {
    throw std::invalid_argument("move_into: " + shape_str(target.shape()) + " for " +
                                shape_str(shape()));
  }
  device::copy(const_cast<Tensor&>(target).raw(), target.device(), raw(), device(), nbytes());
  impl_->storage = target.impl_->storage;
  impl_->offset_bytes = target.impl_->offset_bytes;
}

// ---- autograd bookkeeping --------------------------------------------------------------

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }
Tensor& Tensor::set_requires_grad(bool on) {
  need(impl_);
  impl_->requires_grad = on;
  return *this;
}
Tensor Tensor::grad() const { return need(impl_).grad; }
void Tensor::zero_grad() {
  if (impl_ && impl_->grad.defined()) impl_->grad.fill(0.0f);
}
void Tensor::accumulate_grad(const Tensor& g) {
  need(impl_);
  if (g.shape() != shape()) {
    throw std::logic_error("gradient of shape " + shape_str(g.shape()) + " for a tensor of " +
                           shape_str(shape()));
  }
  // SPEC 1: gradients accumulate. A first gradient is copied (never aliased: the op that
  // produced it may reuse its buffer), later ones are added.
  if (!impl_->grad.defined()) {
    impl_->grad = g.clone();
  } else {
    backend_of(*this).add_inplace(impl_->grad, g);
  }
}
void Tensor::set_grad(const Tensor& g) {
  need(impl_);
  if (g.defined() && g.shape() != shape()) {
    throw std::logic_error("set_grad: " + shape_str(g.shape()) + " for " + shape_str(shape()));
  }
  impl_->grad = g;
}
const std::shared_ptr<Node>& Tensor::grad_fn() const { return need(impl_).grad_fn; }
void Tensor::set_grad_fn(std::shared_ptr<Node> node) {
  need(impl_);
  impl_->grad_fn = std::move(node);
  if (impl_->grad_fn) impl_->requires_grad = true;
}

namespace {
thread_local bool g_grad_enabled = true;
}
bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

}  // namespace sigmar
