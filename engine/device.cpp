// Device memory dispatch (see device.hpp).
#include "engine/device.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#ifdef SIGMAR_CUDA
#include "engine/cuda/runtime.hpp"
#endif

namespace sigmar::device {

namespace {
// 64-byte alignment suits AVX-512 loads and oneDNN's preferred alignment.
constexpr size_t kAlign = 64;

[[noreturn]] void no_cuda() {
  throw std::runtime_error(
      "this sigmar was built without CUDA: rebuild with -Dcuda=enabled, or use --device cpu");
}
}  // namespace

void* alloc(size_t bytes, Device d) {
  if (d == Device::cuda) {
#ifdef SIGMAR_CUDA
    return cuda::alloc(bytes);
#else
    no_cuda();
#endif
  }
  size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
  if (!p) throw std::bad_alloc();
  return p;
}

void release(void* ptr, size_t bytes, Device d) {
  if (!ptr) return;
  if (d == Device::cuda) {
#ifdef SIGMAR_CUDA
    cuda::free(ptr, bytes);
#endif
    return;
  }
  std::free(ptr);
}

void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::cpu && src_device == Device::cpu) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef SIGMAR_CUDA
  if (dst_device == Device::cuda && src_device == Device::cpu) {
    cuda::copy_host_to_device(dst, src, bytes);
  } else if (dst_device == Device::cpu) {
    cuda::copy_device_to_host(dst, src, bytes);
  } else {
    cuda::copy_device_to_device(dst, src, bytes);
  }
#else
  no_cuda();
#endif
}

void zero(void* ptr, size_t bytes, Device d) {
  if (d == Device::cpu) {
    std::memset(ptr, 0, bytes);
    return;
  }
#ifdef SIGMAR_CUDA
  cuda::memset_zero(ptr, bytes);
#else
  no_cuda();
#endif
}

}  // namespace sigmar::device
