// Error checkers for the three GPU libraries, one per library: each turns a failed status into
// a std::runtime_error that names the call as written, the file and line it was made from, and
// the library's own name and text for the status. check_launch() follows every kernel launch
// and names the kernel.
//
// Kernel faults are asynchronous: they surface at a later call. Set SIGMAR_CUDA_SYNC=1 to make
// check_launch() wait for each kernel, so a fault is reported at the launch that caused it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstdlib>
#include <source_location>
#include <stdexcept>
#include <string>

namespace sigmar::cuda {

inline std::string where_str(const char* call, const char* file, int line) {
  return std::string("`") + call + "` at " + file + ":" + std::to_string(line);
}

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw std::runtime_error("CUDA error in " + where_str(call, file, line) + ": " +
                           cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
}

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error("cuBLAS error in " + where_str(call, file, line) + ": " +
                           cublasGetStatusName(status) + ": " + cublasGetStatusString(status));
}

inline void check_cudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  // cuDNN 9 keeps a longer explanation of the last failure; add it when there is one.
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof detail);
  std::string msg = "cuDNN error in " + where_str(call, file, line) + ": " +
                    cudnnGetErrorString(status);
  if (detail[0] != '\0') msg += " (" + std::string(detail) + ")";
  throw std::runtime_error(msg);
}

// Read once: whether every launch is followed by a device-wide wait (debugging aid).
inline bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("SIGMAR_CUDA_SYNC");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

// After every launch: a bad configuration (grid, shared memory, missing kernel image) is
// reported here by name; with SIGMAR_CUDA_SYNC=1 so is a fault inside the kernel.
inline void check_launch(const char* kernel,
                         std::source_location at = std::source_location::current()) {
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess && sync_after_launch()) status = cudaDeviceSynchronize();
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string("CUDA error launching kernel ") + kernel + " at " +
                           at.file_name() + ":" + std::to_string(at.line()) + ": " +
                           cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
}

}  // namespace sigmar::cuda

#define CUDA_CHECK(call) ::sigmar::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ::sigmar::cuda::check_cublas((call), #call, __FILE__, __LINE__)
#define CUDNN_CHECK(call) ::sigmar::cuda::check_cudnn((call), #call, __FILE__, __LINE__)
