// SGD (momentum, Nesterov, L2 weight decay) and Adam / AdamW, CPU twins, in place over n
// values, with PyTorch's update order (SPEC 6) so runs can be compared with it.
//
// Each element is independent, so the loops are plain elementwise passes; per-step scalars
// (bias corrections) are formed once in double, as PyTorch forms them in Python floats.
// Small tensors stay on one thread: a parallel region costs more than a few thousand updates.
#include "kernels/kernels.hpp"

#include <cmath>
#include <stdexcept>

namespace sigmar::kernels {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}

void sgd_step(float* w, const float* g, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool nesterov) {
  if (n < 0) throw std::invalid_argument("sgd_step: negative size");
  if (nesterov && momentum == 0.0f)
    throw std::invalid_argument("sgd_step: Nesterov needs momentum > 0 (as in PyTorch)");
  if (momentum != 0.0f && buf == nullptr)
    throw std::invalid_argument("sgd_step: momentum needs a buffer");

#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    // L2 weight decay folds into the gradient first.
    const float d = g[i] + weight_decay * w[i];
    float step = d;
    if (momentum != 0.0f) {
      // b ← μ·b + g; with b = 0 at the start this is b = g, PyTorch's first step.
      const float b = momentum * buf[i] + d;
      buf[i] = b;
      // Nesterov looks ahead along the new buffer; plain momentum steps along it.
      step = nesterov ? d + momentum * b : b;
    }
    w[i] = w[i] - lr * step;
  }
}

void adam_step(float* w, const float* g, float* m, float* v, int64_t n, int64_t t, float lr,
               float beta1, float beta2, float eps, float weight_decay, bool decoupled) {
  if (n < 0) throw std::invalid_argument("adam_step: negative size");
  if (t < 1) throw std::invalid_argument("adam_step: step count t starts at 1");

  // Bias corrections for step t, and the two factors they turn into.
  const double bc1 = 1.0 - std::pow(double(beta1), double(t));
  const double bc2 = 1.0 - std::pow(double(beta2), double(t));
  const float step_size = float(double(lr) / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float one_m_b1 = float(1.0 - double(beta1)), one_m_b2 = float(1.0 - double(beta2));
  // AdamW shrinks the weight before the step; Adam adds the decay to the gradient instead.
  const float shrink = float(1.0 - double(lr) * double(weight_decay));
  const float l2 = decoupled ? 0.0f : weight_decay;

#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    float wi = w[i];
    const float gi = g[i] + l2 * wi;
    if (decoupled) wi = wi * shrink;

    // First and second moments, exponential moving averages.
    const float mi = beta1 * m[i] + one_m_b1 * gi;
    const float vi = beta2 * v[i] + one_m_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;

    // w ← w - lr·m̂/(√v̂ + ε), with m̂ = m/bc1 and √v̂ = √v/√bc2.
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    w[i] = wi - step_size * (mi / denom);
  }
}

}  // namespace sigmar::kernels
