// The GPU versions of our kernels: launchers callable from host code (g++ or nvcc). Each takes
// the arguments of its CPU twin in kernels/kernels.hpp with device pointers instead, writes a
// loss to a device float* (the host never waits for it), and takes the stream last. Kernels
// that reduce need scratch: NAME_workspace(shape) gives its size in bytes and the caller
// passes that much device memory as `workspace` (nothing borrows another tensor's buffer).
//
// Every launcher checks its arguments first (std::invalid_argument naming it) and every
// launch after it (check_launch, engine/cuda/check.hpp). Labels must already have passed
// kernels::check_labels on the host: kernels index by them without looking.
//
// Results equal the CPU twins up to floating-point rounding: the same formulas, the same
// double-precision accumulators, the same order of operations within an element. Sums run in
// an order fixed by the shape, so every result is bitwise reproducible on one GPU model.
#pragma once

#include "kernels/kernels.hpp"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace sigmar::kernels::gpu {

// Whether this build holds machine code the current device can run (cudaSuccess), or why not
// (cudaErrorNoKernelImageForDevice for a GPU outside the architectures built for).
cudaError_t kernel_image_status();

// ---- softmax cross-entropy (softmax_ce.cu) -----------------------------------------------
// logits [B,C], labels [B] -> loss[0] = mean CE; grad [B,C] (may be null) = (softmax−onehot)/B.
size_t softmax_ce_workspace(int64_t B, int64_t C);
void softmax_ce(const float* logits, const int32_t* labels, int64_t B, int64_t C, float* grad,
                float* loss, void* workspace, cudaStream_t stream);

// ---- center loss (center.cu) -------------------------------------------------------------
// x [B,D], centers [C,D] -> loss[0] = 1/(2B) Σ ‖x_i − c_{y_i}‖²; grad_x [B,D] (may be null).
size_t center_loss_workspace(int64_t B);
void center_loss(const float* x, const int32_t* labels, const float* centers, int64_t B,
                 int64_t D, float* grad_x, float* loss, void* workspace, cudaStream_t stream);
// c_j ← c_j − α·Σ_{y_i=j}(c_j − x_i)/(1 + n_j); classes absent from the batch are not written.
size_t center_update_workspace(int64_t B, int64_t C);
void center_update(const float* x, const int32_t* labels, float* centers, int64_t B, int64_t D,
                   int64_t C, float alpha, void* workspace, cudaStream_t stream);

// Building blocks of the two center updates (center.cu), exposed for s2r.cu:
// order [B] = sample indices grouped by class, batch order kept within a class;
// offsets [C+1] = where each class's group starts (a stable counting sort).
void class_segments(const int32_t* labels, int64_t B, int64_t C, int32_t* order,
                    int32_t* offsets, cudaStream_t stream);
// Moves each present class's center by the rule above; when `variances` is given, also
// v_j ← v_j − α·Σ_{y_i=j}(v_j − d_i)/(1 + n_j) with d [B] the distances to the old centers.
void class_state_update(const float* x, const int32_t* order, const int32_t* offsets,
                        float* centers, float* variances, const double* d, int64_t D,
                        int64_t C, float alpha, cudaStream_t stream);

// ---- soft nearest neighbour loss (snnl.cu) -----------------------------------------------
// x [B,D] -> loss[0] = mean ℓ_i over anchors with a same-class partner (0 if none);
// grad_x [B,D] (may be null) is the exact derivative. No B×B matrix is ever stored.
size_t snnl_workspace(int64_t B, int64_t D);
void snnl(const float* x, const int32_t* labels, int64_t B, int64_t D, float temperature,
          float* grad_x, float* loss, void* workspace, cudaStream_t stream);

// ---- σ²R (s2r.cu) ------------------------------------------------------------------------
size_t s2r_loss_workspace(int64_t B);
void s2r_loss(const float* x, const int32_t* labels, const float* centers,
              const float* variances, int64_t B, int64_t D, S2RParams p, float* grad_x,
              float* loss, void* workspace, cudaStream_t stream);
size_t s2r_update_workspace(int64_t B, int64_t C);
void s2r_update(const float* x, const int32_t* labels, float* centers, float* variances,
                int64_t B, int64_t D, int64_t C, float alpha, void* workspace,
                cudaStream_t stream);
// The device's stable sigmoid on n values, for tests: s = σ(t), s1ms = σ(t)(1 − σ(t)).
void sigmoid_pair(const float* t, int64_t n, float* s, float* s1ms, cudaStream_t stream);

// ---- PReLU (prelu.cu) ----------------------------------------------------------------------
void prelu_forward(const float* x, const float* a, int64_t N, int64_t Ch, int64_t S,
                   int64_t num_slopes, float* y, cudaStream_t stream);
// dx [N,Ch,S] written; da [num_slopes] written, summed deterministically.
size_t prelu_backward_workspace(int64_t N, int64_t Ch, int64_t S, int64_t num_slopes);
void prelu_backward(const float* x, const float* a, const float* dy, int64_t N, int64_t Ch,
                    int64_t S, int64_t num_slopes, float* dx, float* da, void* workspace,
                    cudaStream_t stream);

// ---- optimizers (optim.cu) ---------------------------------------------------------------
void sgd_step(float* w, const float* g, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool nesterov, cudaStream_t stream);
void adam_step(float* w, const float* g, float* m, float* v, int64_t n, int64_t t, float lr,
               float beta1, float beta2, float eps, float weight_decay, bool decoupled,
               cudaStream_t stream);
// Many parameter tensors in one launch per group of up to kMaxSlots tensors. For SGD `s1` is
// the momentum buffer (null when momentum is 0) and `s2` unused; for Adam they are m and v.
struct ParamSlot {
  float* w = nullptr;
  const float* g = nullptr;
  float* s1 = nullptr;
  float* s2 = nullptr;
  int64_t n = 0;
};
void sgd_step_multi(const ParamSlot* slots, int count, float lr, float momentum,
                    float weight_decay, bool nesterov, cudaStream_t stream);
void adam_step_multi(const ParamSlot* slots, int count, int64_t t, float lr, float beta1,
                     float beta2, float eps, float weight_decay, bool decoupled,
                     cudaStream_t stream);

// ---- data (data.cu) ----------------------------------------------------------------------
constexpr int kMaxImageChannels = 16;
struct ChannelStats {  // per-channel normalisation statistics
  int channels = 0;
  float mean[kMaxImageChannels] = {};
  float stddev[kMaxImageChannels] = {};
};
// out [B,C,S] = ((images[indices[b], c, s] / 255) − mean[c]) / stddev[c], images u8 [N,C,S];
// indices must lie in [0, N) (checked by the caller on the host).
void gather_normalize(const uint8_t* images, const int32_t* indices, int64_t B, int64_t N,
                      int64_t C, int64_t S, const ChannelStats& stats, float* out,
                      cudaStream_t stream);

// ---- elementwise and small reductions (elementwise.cu) ------------------------------------
void fill(float* dst, int64_t n, float value, cudaStream_t stream);
void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream);
void add_inplace(float* dst, const float* src, int64_t n, cudaStream_t stream);
// out = a + s·b.
void add_scaled(const float* a, const float* b, float s, float* out, int64_t n,
                cudaStream_t stream);
// out = x·s[0], with s a one-element device buffer (read on the device: no host wait).
void scale_by(const float* x, const float* s, float* out, int64_t n, cudaStream_t stream);
// ReLU: y = max(x, 0); dx = dy where x > 0, else 0 (the derivative at 0 is 0, SPEC 1).
void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
void relu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream);
// Global average pool over S = H·W: x [R,S] -> y [R] (R = N·C rows); backward spreads dy/S.
void global_avgpool_forward(const float* x, int64_t R, int64_t S, float* y,
                            cudaStream_t stream);
void global_avgpool_backward(const float* dy, int64_t R, int64_t S, float* dx,
                             cudaStream_t stream);
// out [rows, cols] = b broadcast to every row (a linear layer's bias before the GEMM adds x·Wᵀ).
void broadcast_rows(const float* b, int64_t rows, int64_t cols, float* out,
                    cudaStream_t stream);
// out[g] = Σ_{n, r} x[n, g, r] for x viewed as [N, G, R] (bias gradients).
size_t channel_sum_workspace(int64_t N, int64_t G, int64_t R);
void channel_sum(const float* x, int64_t N, int64_t G, int64_t R, float* out, void* workspace,
                 cudaStream_t stream);
// The last step of every loss: out[0] = scale·Σ values (or Σ values / Σ weights when weights
// are given, 0 when that count is 0), summed in double in a fixed order by one block. When
// count_out is given it receives Σ weights. values and weights are doubles [n].
void finish_mean(const double* values, const double* weights, int64_t n, double scale,
                 float* out, double* count_out, cudaStream_t stream);

}  // namespace sigmar::kernels::gpu
