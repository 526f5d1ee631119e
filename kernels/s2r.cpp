// σ²R loss (SPEC 2.4), CPU twin: the loss with its gradient, and the update of the loss state
// (class centers and class variances) by the center rule.
//
// Per sample, from the pre-update state: d = ‖x - c_y‖², z = (d - v_y)/(v_y + ε),
// s = sigmoid(k·z), w = 2s, loss term w·d. The gradient is (1/B)(w + d·∂w/∂d)(x - c_y) with
// ∂w/∂d = 2k·s(1 - s)/(v_y + ε); the detached option drops d·∂w/∂d.
// Everything per sample is done in double: z can be ~1e14 for a feature far from a center
// with v = 0, k·z can reach 1e30 and more, and s(1 - s) is formed as e/(1 + e)² from
// e = exp(-|k·z|), so it is exactly 0 (never inf·0) in the saturated tails.
// Samples run in parallel; per-sample loss terms are added in sample order afterwards.
#include "kernels/kernels.hpp"

#include <cmath>
#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

namespace {

// sigmoid(t) and sigmoid(t)·(1 - sigmoid(t)) from one exp of -|t| (two-branch stable form).
inline void sigmoid_and_slope(double t, double& s, double& s1ms) {
  const double e = std::exp(-std::fabs(t));  // in (0, 1], 0 when |t| is huge or inf
  const double r = 1.0 / (1.0 + e);
  s = t >= 0.0 ? r : e * r;
  // s(1 - s) = e/(1 + e)² in both branches; no subtraction 1 - s that would round to 0 early.
  s1ms = e * r * r;
}

}  // namespace

float s2r_loss(const float* x, const int32_t* labels, const float* centers,
               const float* variances, int64_t B, int64_t D, S2RParams p, float* grad_x) {
  if (B < 0 || D <= 0) throw std::invalid_argument("s2r_loss: need B >= 0 and D > 0");
  if (!(p.slope > 0.0f) || !(p.eps > 0.0f))
    throw std::invalid_argument("s2r_loss: slope k and eps must be > 0");
  if (B == 0) return 0.0f;

  std::vector<double> term(static_cast<size_t>(B));
  const double inv_b = 1.0 / double(B), k = p.slope, eps = p.eps;

#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; ++i) {
    const float* xi = x + i * D;
    const float* c = centers + int64_t(labels[i]) * D;
    const double v = variances[labels[i]];

    // The center error d, in double (no cancellation: a sum of squares).
    double d = 0.0;
#pragma omp simd reduction(+ : d)
    for (int64_t j = 0; j < D; ++j) {
      const double diff = double(xi[j]) - double(c[j]);
      d += diff * diff;
    }

    // The weight: z measures d against the class variance, w = 2·sigmoid(k·z).
    const double z = (d - v) / (v + eps);
    double s, s1ms;
    sigmoid_and_slope(k * z, s, s1ms);
    const double w = 2.0 * s;
    term[i] = w * d;

    if (grad_x) {
      // Full gradient factor w + d·∂w/∂d; order k·s(1-s) first so a 0 tail stays 0 even when
      // d/(v+ε) is huge (d ≤ ~1e77 is finite, far beyond float features).
      double factor = w;
      if (!p.detached) factor += 2.0 * (k * s1ms) * (d / (v + eps));
      const double f = factor * inv_b;
      float* g = grad_x + i * D;
      for (int64_t j = 0; j < D; ++j) g[j] = float(f * (double(xi[j]) - double(c[j])));
    }
  }

  double total = 0.0;
  for (int64_t i = 0; i < B; ++i) total += term[i];
  return float(total * 0.5 * inv_b);
}

void s2r_update(const float* x, const int32_t* labels, float* centers, float* variances,
                int64_t B, int64_t D, int64_t C, float alpha) {
  if (B < 0 || D <= 0 || C <= 0) throw std::invalid_argument("s2r_update: bad shape");
  if (!(alpha > 0.0f && alpha <= 1.0f))
    throw std::invalid_argument("s2r_update: alpha must lie in (0, 1]");

  // d_i with the OLD centers, before any center moves.
  std::vector<double> dist(static_cast<size_t>(B));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; ++i) {
    const float* xi = x + i * D;
    const float* c = centers + int64_t(labels[i]) * D;
    double d = 0.0;
#pragma omp simd reduction(+ : d)
    for (int64_t j = 0; j < D; ++j) {
      const double diff = double(xi[j]) - double(c[j]);
      d += diff * diff;
    }
    dist[i] = d;
  }

  // v_j ← v_j - α·Σ_{i∈j} (v_j - d_i)/(1 + n_j) = v_j - α·(n_j v_j - Σ d_i)/(1 + n_j),
  // summed in batch order; absent classes are not written.
  std::vector<double> sum_d(static_cast<size_t>(C), 0.0);
  std::vector<int64_t> n(static_cast<size_t>(C), 0);
  for (int64_t i = 0; i < B; ++i) {
    sum_d[labels[i]] += dist[i];
    ++n[labels[i]];
  }
  for (int64_t j = 0; j < C; ++j) {
    if (n[j] == 0) continue;
    const double v = variances[j];
    const double delta = (double(n[j]) * v - sum_d[j]) / (1.0 + double(n[j]));
    variances[j] = float(v - double(alpha) * delta);
  }

  // The centers move by the center rule (which also leaves absent classes untouched).
  center_update(x, labels, centers, B, D, C, alpha);
}

}  // namespace sigmar::kernels
