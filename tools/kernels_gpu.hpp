// GPU pieces of sigmar-kernels (tools/kernels_gpu.cu, CUDA builds only), over raw device
// pointers so that nvcc never sees the engine's classes:
// - the generic ops of the unfused chain as single-purpose kernels (one pass each);
// - cuBLAS and cuDNN called directly (GEMM, linear layer, convolution);
// - the machine's limits: an empty kernel, an FMA-bound kernel.
// Every call takes the stream it runs on and returns without waiting.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace sigmar::lab::gpu {

// Op numbers follow the enums of tools/kernels_reference.hpp (Unary, Binary, Reduce);
// binary() also takes kMaskedFill: y = keep != 0 ? a : value. `mode` says how b lines up
// with a seen as [R,K]: 0 same shape, 1 scalar, 2 one value per row, 3 one per column.
constexpr int kMaskedFill = 100;
void unary(int op, const float* a, float s, float* y, int64_t n, cudaStream_t stream);
void binary(int op, int mode, const float* a, const float* b, float value, float* y, int64_t R,
            int64_t K, cudaStream_t stream);
void reduce_rows(int op, const float* a, float* y, int64_t R, int64_t K, cudaStream_t stream);
int64_t sum_all_scratch(int64_t n);  // floats of scratch sum_all needs
void sum_all(const float* a, int64_t n, float* scratch, float* y, cudaStream_t stream);
void gather_rows(const float* table, const int32_t* index, float* y, int64_t B, int64_t K,
                 cudaStream_t stream);
void pick(const float* a, const int32_t* index, float* y, int64_t R, int64_t K,
          cudaStream_t stream);
// y [rows,K] must be zero; y[index[i]] += src[i] (atomics, as a framework's index_add).
void index_add_rows(const float* src, const int32_t* index, float* y, int64_t B, int64_t K,
                    cudaStream_t stream);
void one_hot(const int32_t* index, float* y, int64_t B, int64_t C, cudaStream_t stream);
void same_label(const int32_t* index, float* y, int64_t B, cudaStream_t stream);
void eye(float* y, int64_t n, cudaStream_t stream);
void transpose(const float* a, float* y, int64_t R, int64_t K, cudaStream_t stream);

// C[M,N] = op(A)·op(B) + beta·C, row-major, by cuBLAS (fp32 math, no TF32).
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc, cudaStream_t stream);
// Linear layer forward and backward by cuBLAS: y = x·Wᵀ + b, dx = dy·W, dW = dyᵀ·x,
// db = dyᵀ·1 (b, db may be null). x [N,I], W [O,I], ones [N] of 1.0f.
void linear(const float* x, const float* w, const float* b, const float* dy, const float* ones,
            float* y, float* dx, float* dw, float* db, int64_t N, int64_t I, int64_t O,
            cudaStream_t stream);

// Convolution forward + backward (data, filter, bias) by cuDNN with its own descriptors,
// algorithms from cuDNN's heuristics (the _v7 queries) and its own workspace.
struct ConvShape {
  int64_t N, C, H, W, K, R, S;  // input [N,C,H,W], filters [K,C,R,S]
  int pad, stride;
};
struct CudnnConv;
CudnnConv* conv_create(const ConvShape& s, cudaStream_t stream);
void conv_run(CudnnConv* c, const float* x, const float* w, const float* b, const float* dy,
              float* y, float* dx, float* dw, float* db);
void conv_destroy(CudnnConv* c);

// ---- machine limits ----------------------------------------------------------------------------
void empty_kernel(cudaStream_t stream);
// Independent FMA chains in registers on every SM; returns the FLOPs one launch performs.
double fma_kernel(float* sink, cudaStream_t stream);
int64_t fma_kernel_sink_floats();

}  // namespace sigmar::lab::gpu
