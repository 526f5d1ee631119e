// Center loss (Wen et al. 2016; SPEC 2.2), CPU twin: the loss with its gradient, and the
// paper's center update.
//
// Loss: each sample's squared distance to its class center, summed in double, one slot per
// sample; the slots are added in sample order, so threads never change the value.
// Update: samples are bucketed by class (a stable counting sort), then each present class
// sums its own members in batch order and moves; absent classes are never written.
#include "kernels/kernels.hpp"

#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

float center_loss(const float* x, const int32_t* labels, const float* centers, int64_t B,
                  int64_t D, float* grad_x) {
  if (B < 0 || D <= 0) throw std::invalid_argument("center_loss: need B >= 0 and D > 0");
  if (B == 0) return 0.0f;

  std::vector<double> dist(static_cast<size_t>(B));
  const double inv_b = 1.0 / double(B);

#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; ++i) {
    const float* xi = x + i * D;
    const float* c = centers + int64_t(labels[i]) * D;

    // Why double: D squares of float differences, no cancellation, sum exact to float.
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (int64_t d = 0; d < D; ++d) {
      const double diff = double(xi[d]) - double(c[d]);
      acc += diff * diff;
    }
    dist[i] = acc;

    // ∂L/∂x_i = (x_i - c_{y_i}) / B.
    if (grad_x) {
      float* g = grad_x + i * D;
      for (int64_t d = 0; d < D; ++d) g[d] = float((double(xi[d]) - double(c[d])) * inv_b);
    }
  }

  double total = 0.0;
  for (int64_t i = 0; i < B; ++i) total += dist[i];
  return float(total / (2.0 * double(B)));
}

void center_update(const float* x, const int32_t* labels, float* centers, int64_t B, int64_t D,
                   int64_t C, float alpha) {
  if (B < 0 || D <= 0 || C <= 0) throw std::invalid_argument("center_update: bad shape");
  if (!(alpha > 0.0f && alpha <= 1.0f))
    throw std::invalid_argument("center_update: alpha must lie in (0, 1]");

  // Counting sort of sample indices by class: start[j]..start[j+1] are class j's members,
  // in batch order, so each class's sum has a fixed order.
  std::vector<int64_t> start(static_cast<size_t>(C) + 1, 0);
  for (int64_t i = 0; i < B; ++i) ++start[labels[i] + 1];
  for (int64_t j = 0; j < C; ++j) start[j + 1] += start[j];
  std::vector<int64_t> members(static_cast<size_t>(B));
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < B; ++i) members[fill[labels[i]]++] = i;

#pragma omp parallel
  {
    std::vector<double> sum(static_cast<size_t>(D));
#pragma omp for schedule(dynamic)
    for (int64_t j = 0; j < C; ++j) {
      const int64_t n = start[j + 1] - start[j];
      // An absent class keeps its center bit-for-bit: not even rewritten with itself.
      if (n == 0) continue;

      // Σ_i x_i over the class, in double and batch order.
      for (int64_t d = 0; d < D; ++d) sum[d] = 0.0;
      for (int64_t p = start[j]; p < start[j + 1]; ++p) {
        const float* xi = x + members[p] * D;
        for (int64_t d = 0; d < D; ++d) sum[d] += double(xi[d]);
      }

      // Δc = Σ (c - x_i) / (1 + n) = (n·c - Σ x_i) / (1 + n); c ← c - α·Δc.
      float* c = centers + j * D;
      const double denom = 1.0 + double(n);
      for (int64_t d = 0; d < D; ++d) {
        const double delta = (double(n) * double(c[d]) - sum[d]) / denom;
        c[d] = float(double(c[d]) - double(alpha) * delta);
      }
    }
  }
}

}  // namespace sigmar::kernels
