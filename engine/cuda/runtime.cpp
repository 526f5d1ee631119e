// The CUDA runtime seam (engine/cuda/runtime.hpp): finding the GPU, the run's one stream, the
// caching allocator, host/device copies, and the one CudaBackend of the process.
//
// One stream carries all work of the process: kernels, cuDNN, cuBLAS and copies. That single
// order is what makes the caching allocator safe without events: a block freed on the host
// may still be read by queued work, but whatever reuses it is queued behind that work.
//
// The allocator and the stream are created on first use and deliberately never destroyed:
// tensors held in static objects are freed during process exit, possibly after the CUDA
// runtime has unloaded, so free() only returns blocks to the cache and never calls CUDA.
#include "engine/cuda/runtime.hpp"

#include "engine/cuda/check.hpp"
#include "engine/cuda/cuda_backend.hpp"
#include "kernels/kernels_cuda.cuh"

#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace sigmar::cuda {

namespace {

// ---- device discovery ------------------------------------------------------------------

struct Probe {
  bool ok = false;
  std::string why;
};

std::string hint_for(cudaError_t status) {
  switch (status) {
    case cudaErrorNoDevice:
      return "no NVIDIA GPU is visible to this process (check CUDA_VISIBLE_DEVICES)";
    case cudaErrorInsufficientDriver:
      return "no NVIDIA driver is loaded, or it is older than this CUDA runtime requires";
    case cudaErrorSystemDriverMismatch:
      return "the NVIDIA kernel module and user-space driver versions differ";
    case cudaErrorDevicesUnavailable:
      return "every GPU is busy or in exclusive/prohibited compute mode";
    default:
      return "the CUDA runtime could not be initialised";
  }
}

Probe run_probe() {
  Probe p;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    p.why = "no usable GPU: cudaGetDeviceCount failed with " +
            std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) +
            "): " + hint_for(status);
    return p;
  }
  if (count == 0) {
    p.why = "no usable GPU: the CUDA runtime sees 0 devices";
    return p;
  }
  status = cudaSetDevice(0);
  if (status == cudaSuccess) status = cudaFree(nullptr);  // creates the context now
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    p.why = "no usable GPU: device 0 could not be initialised: " +
            std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
    return p;
  }
  // A GPU outside the architectures this build compiled for has no machine code to run.
  status = kernels::gpu::kernel_image_status();
  if (status != cudaSuccess) {
    cudaDeviceProp prop{};
    (void)cudaGetDeviceProperties(&prop, 0);
    p.why = "GPU " + std::string(prop.name) + " (compute capability " +
            std::to_string(prop.major) + "." + std::to_string(prop.minor) +
            ") cannot run this build's kernels: " + cudaGetErrorString(status) +
            "; reconfigure with -Dgpu_archs=" + std::to_string(prop.major * 10 + prop.minor);
    return p;
  }
  p.ok = true;
  return p;
}

const Probe& probe() {
  static const Probe p = run_probe();
  return p;
}

void require_gpu(const char* what) {
  const Probe& p = probe();
  if (!p.ok) throw std::runtime_error(std::string(what) + ": " + p.why);
}

// ---- caching allocator -----------------------------------------------------------------

constexpr size_t kSmallLimit = size_t(1) << 20;  // blocks up to 1 MiB: 512-byte granules
constexpr size_t kSmallGranule = 512;
constexpr size_t kLargeGranule = size_t(2) << 20;  // larger blocks: 2 MiB granules

size_t round_up(size_t bytes) {
  const size_t g = bytes <= kSmallLimit ? kSmallGranule : kLargeGranule;
  return bytes == 0 ? g : (bytes + g - 1) / g * g;
}

class Allocator {
 public:
  void* alloc(size_t bytes) {
    const size_t size = round_up(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    // Reuse a cached block of this size, or one at most a quarter larger (bounded waste).
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= size + size / 4) {
      void* ptr = it->second;
      live_[ptr] = it->first;
      cached_bytes_ -= it->first;
      free_.erase(it);
      return ptr;
    }
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation) {
      // Out of memory: hand every cached block back to the driver and try once more.
      (void)cudaGetLastError();
      release_cache_locked();
      status = cudaMalloc(&ptr, size);
    }
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      throw std::runtime_error(
          "CUDA allocation of " + std::to_string(size) + " bytes failed: " +
          cudaGetErrorString(status) + " (held by sigmar: " + std::to_string(held_bytes_) +
          " bytes, of which cached " + std::to_string(cached_bytes_) +
          "; free on the device: " + std::to_string(free_b) + " of " +
          std::to_string(total_b) + ")");
    }
    live_[ptr] = size;
    held_bytes_ += size;
    return ptr;
  }

  // Never throws and never calls CUDA (it may run during process exit).
  void free(void* ptr) noexcept {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    if (it == live_.end()) {
      std::fprintf(stderr, "sigmar: cuda::free of a pointer it did not allocate (%p)\n", ptr);
      return;
    }
    free_.emplace(it->second, ptr);
    cached_bytes_ += it->second;
    live_.erase(it);
  }

 private:
  void release_cache_locked() {
    // cudaFree waits for the device, so no queued kernel still reads these blocks.
    for (auto& [size, ptr] : free_) {
      (void)cudaFree(ptr);
      held_bytes_ -= size;
    }
    free_.clear();
    cached_bytes_ = 0;
  }

  std::mutex mu_;
  std::multimap<size_t, void*> free_;       // cached blocks by size
  std::unordered_map<void*, size_t> live_;  // blocks handed out, with their real size
  size_t held_bytes_ = 0;    // bytes obtained from cudaMalloc and not given back
  size_t cached_bytes_ = 0;  // of which, bytes sitting in the cache
};

Allocator& allocator() {
  static Allocator* a = new Allocator();  // never destroyed: see the file comment
  return *a;
}

}  // namespace

bool available(std::string* why) {
  const Probe& p = probe();
  if (why) *why = p.ok ? std::string() : p.why;
  return p.ok;
}

cudaStream_t stream() {
  static cudaStream_t s = [] {
    require_gpu("cuda::stream");
    cudaStream_t created = nullptr;
    // Non-blocking: no implicit ordering against the legacy default stream, which we never
    // use; everything of ours is ordered by this one stream.
    CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
    return created;
  }();
  return s;
}

void* alloc(size_t bytes) {
  require_gpu("cuda::alloc");
  return allocator().alloc(bytes);
}

void free(void* ptr, size_t) { allocator().free(ptr); }

void copy_host_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  // From ordinary (pageable) memory the driver has staged the bytes before returning, so
  // the caller may reuse `src` at once. From page-locked memory the copy really is
  // asynchronous: wait, so the caller cannot overwrite the bytes before they are read.
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, src) != cudaSuccess) {
    (void)cudaGetLastError();
    attr.type = cudaMemoryTypeHost;  // unknown: take the safe path
  }
  if (attr.type != cudaMemoryTypeUnregistered) CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_device_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  // The host reads dst next: wait for the copy and for everything queued before it.
  CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void memset_zero(void* ptr, size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream()));
}

void synchronize() { CUDA_CHECK(cudaStreamSynchronize(stream())); }

Backend& backend() {
  require_gpu("the CUDA backend");
  static CudaBackend* b = new CudaBackend();  // never destroyed: see the file comment
  return *b;
}

}  // namespace sigmar::cuda
