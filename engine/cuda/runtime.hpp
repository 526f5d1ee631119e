// The CUDA runtime seam seen from host code that is compiled without nvcc: device discovery,
// the caching allocator, copies, the stream, and the CUDA backend object. Implemented in
// engine/cuda/*.cpp|cu and compiled only when the build found CUDA (SIGMAR_CUDA=1).
#pragma once

#include <cstddef>
#include <string>

namespace sigmar {
class Backend;
}

namespace sigmar::cuda {

// True when a GPU answers; otherwise false with the reason (no device, driver too old, ...).
bool available(std::string* why);

// Caching allocator: freed blocks are kept per size and reused; never returns null (throws).
void* alloc(size_t bytes);
void free(void* ptr, size_t bytes);

// Copies on the run's stream; a device-to-host copy waits for it (the host reads next).
void copy_host_to_device(void* dst, const void* src, size_t bytes);
void copy_device_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void memset_zero(void* ptr, size_t bytes);
void synchronize();

// The one CUDA backend of this process (created on first use; throws if !available()).
Backend& backend();

}  // namespace sigmar::cuda
