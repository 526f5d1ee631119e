// Raw memory on a device: allocation, copies and zeroing. The CPU side is plain aligned
// malloc; the CUDA side forwards to engine/cuda/runtime.hpp and throws in a CPU-only build.
#pragma once

#include "engine/tensor.hpp"

#include <cstddef>

namespace sigmar::device {

void* alloc(size_t bytes, Device d);
void release(void* ptr, size_t bytes, Device d);
void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void zero(void* ptr, size_t bytes, Device d);

}  // namespace sigmar::device
