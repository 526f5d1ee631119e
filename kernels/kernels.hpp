// Our own kernels, as plain functions over raw float32 buffers. Each one has a CPU twin here
// (kernels/NAME.cpp) and, in a CUDA build, a GPU version with the same arguments plus a stream
// (kernels/NAME.cu, declared in kernels/kernels_cuda.cuh). The CPU twin is the reference the
// GPU version is tested against, and what the CPU backend runs.
//
// Conventions for every kernel:
// - Row-major, contiguous. B samples, D feature width, C classes.
// - Labels are int32 and have been checked to lie in [0, C) by check_labels() before the call.
// - Gradients are *written* (overwritten) into the output buffer; autograd does the adding.
// - Losses are means over the samples they are defined on (SPEC 1); sums accumulate in double
//   on the CPU.
#pragma once

#include <cstdint>

namespace sigmar::kernels {

// Throws std::invalid_argument naming `what`, the first bad label, its position and C when a
// label is outside [0, C). The one label check every backend runs before a kernel indexes.
void check_labels(const int32_t* labels, int64_t n, int64_t num_classes, const char* what);

// Numerically stable logistic function: never overflows for any finite or infinite input.
float stable_sigmoid(float x);

// ---- softmax cross-entropy (SPEC 2.1) --------------------------------------------------
// logits [B,C], labels [B] -> returns mean CE; grad [B,C] = (softmax - onehot)/B (may be null).
float softmax_ce(const float* logits, const int32_t* labels, int64_t B, int64_t C, float* grad);

// ---- center loss (SPEC 2.2) --------------------------------------------------------------
// x [B,D], centers [C,D] -> L_C = 1/(2B) Σ ‖x_i − c_{y_i}‖²; grad_x [B,D] (may be null).
float center_loss(const float* x, const int32_t* labels, const float* centers, int64_t B,
                  int64_t D, float* grad_x);
// The paper's rule with rate alpha; classes absent from the batch keep their centers exactly.
void center_update(const float* x, const int32_t* labels, float* centers, int64_t B, int64_t D,
                   int64_t C, float alpha);

// ---- soft nearest neighbour loss (SPEC 2.3) ----------------------------------------------
// x [B,D], temperature T > 0 -> mean ℓ_i over anchors with a same-class partner (0 if none);
// grad_x [B,D] (may be null) is the exact derivative, anchor and neighbour terms together.
float snnl(const float* x, const int32_t* labels, int64_t B, int64_t D, float temperature,
           float* grad_x);

// ---- σ²R (SPEC 2.4) ----------------------------------------------------------------------
struct S2RParams {
  float slope = 1.0f;     // k > 0
  bool detached = false;  // weight_grad = detached
  float eps = 1e-6f;
};
// x [B,D], centers [C,D], variances [C] -> L = 1/(2B) Σ w_i d_i; grad_x [B,D] (may be null).
float s2r_loss(const float* x, const int32_t* labels, const float* centers,
               const float* variances, int64_t B, int64_t D, S2RParams p, float* grad_x);
// Centers and variances move by the center rule with rate alpha; d_i uses the old centers.
void s2r_update(const float* x, const int32_t* labels, float* centers, float* variances,
                int64_t B, int64_t D, int64_t C, float alpha);

// ---- PReLU -------------------------------------------------------------------------------
// x viewed as [N, Ch, S] (S = H·W, or 1 for [N,Ch]); slope a has Ch entries, or 1 (shared)
// when num_slopes == 1. y = x > 0 ? x : a·x. At x == 0 the derivative is the slope (SPEC 1).
void prelu_forward(const float* x, const float* a, int64_t N, int64_t Ch, int64_t S,
                   int64_t num_slopes, float* y);
// dx [N,Ch,S] written; da [num_slopes] written (sum over everything its slope touches).
void prelu_backward(const float* x, const float* a, const float* dy, int64_t N, int64_t Ch,
                    int64_t S, int64_t num_slopes, float* dx, float* da);

// ---- optimizers (SPEC 6, PyTorch semantics), in place over n values ----------------------
// g ← g + wd·w; b ← μ·b + g (b starts at 0, so the first step gives b = g as in PyTorch);
// Nesterov steps with g + μ·b, plain momentum with b; w ← w − lr·step. μ = 0 is plain SGD.
void sgd_step(float* w, const float* g, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool nesterov);
// Adam / AdamW with bias correction for step t ≥ 1.
void adam_step(float* w, const float* g, float* m, float* v, int64_t n, int64_t t, float lr,
               float beta1, float beta2, float eps, float weight_decay, bool decoupled);

}  // namespace sigmar::kernels
