// Device memory dispatch (see device.hpp).
#include "engine/device.hpp"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#ifdef SIGMAR_CUDA
#include "engine/cuda/runtime.hpp"
#endif

namespace sigmar::device {

namespace {
// 64-byte alignment suits AVX-512 loads and oneDNN's preferred alignment.
constexpr size_t kAlign = 64;

// A caching host allocator. A training step allocates the same activation and gradient sizes
// every time; handing each back to the OS (large blocks are mmap'ed) makes every step pay for
// fresh zeroed pages, which cost more than the elementwise ops writing them. Freed blocks are
// kept per exact size and reused, so the pool settles at the peak of one step.
class HostPool {
 public:
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlign, bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void give(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_[bytes].push_back(p);
  }
  ~HostPool() {
    for (auto& [bytes, blocks] : free_)
      for (void* p : blocks) std::free(p);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
};

HostPool& host_pool() {
  static HostPool* pool = new HostPool();  // never destroyed: tensors may outlive main()
  return *pool;
}

size_t rounded(size_t bytes) {
  return bytes == 0 ? kAlign : (bytes + kAlign - 1) / kAlign * kAlign;
}

#ifndef SIGMAR_CUDA
[[noreturn]] void no_cuda() {
  throw std::runtime_error(
      "this sigmar was built without CUDA: rebuild with -Dcuda=enabled, or use --device cpu");
}
#endif
}  // namespace

void* alloc(size_t bytes, Device d) {
  if (d == Device::cuda) {
#ifdef SIGMAR_CUDA
    return cuda::alloc(bytes);
#else
    no_cuda();
#endif
  }
  return host_pool().take(rounded(bytes));
}

void release(void* ptr, size_t bytes, Device d) {
  if (!ptr) return;
  if (d == Device::cuda) {
#ifdef SIGMAR_CUDA
    cuda::free(ptr, bytes);
#endif
    return;
  }
  host_pool().give(ptr, rounded(bytes));
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
