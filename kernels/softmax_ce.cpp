// Softmax cross-entropy, forward and backward in one pass (SPEC 2.1), CPU twin.
//
// Each row i of logits [B,C] is handled alone: subtract the row maximum m, sum exp(z - m) in
// double, and write loss_i = (m - z_y) + log(sum). Splitting lse - z_y that way keeps the two
// large terms from cancelling (z = ±1e8) and lets -inf logits drop out as exp(-inf) = 0.
// Rows run in parallel; the per-row losses are summed afterwards in row order, so the
// result does not depend on the number of threads.
#include "kernels/kernels.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

namespace {

// One row: returns its loss and, if g is given, writes (softmax - onehot) * inv_b into it.
// e is scratch for the C shifted exponentials.
double ce_row(const float* z, int32_t y, int64_t C, double inv_b, float* g, double* e) {
  // Why the max: every exponent becomes ≤ 0, so nothing overflows and the largest term is 1.
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t k = 0; k < C; ++k) m = std::fmax(m, z[k]);

  // A row of all -inf, or one holding +inf, has no softmax: report an infinite loss (no NaN)
  // and give the row no gradient.
  if (!std::isfinite(m)) {
    if (g)
      for (int64_t k = 0; k < C; ++k) g[k] = 0.0f;
    return std::numeric_limits<double>::infinity();
  }

  // Why double: the sum of up to C terms in [0, 1] and its log are then exact to float.
  // exp(-inf - m) = 0, so masked classes drop out.
  double sum = 0.0;
  for (int64_t k = 0; k < C; ++k) {
    e[k] = std::exp(double(z[k]) - double(m));
    sum += e[k];
  }

  // loss = logsumexp - z_y = (m - z_y) + log(sum); a -inf target gives +inf, honestly.
  const double loss = (double(m) - double(z[y])) + std::log(sum);

  if (g) {
    // softmax_k = e_k / sum; the target's 1 is subtracted before scaling by 1/B.
    const double inv_sum = 1.0 / sum;
    for (int64_t k = 0; k < C; ++k) g[k] = float(e[k] * inv_sum * inv_b);
    g[y] = float((e[y] * inv_sum - 1.0) * inv_b);
  }
  return loss;
}

}  // namespace

float softmax_ce(const float* logits, const int32_t* labels, int64_t B, int64_t C, float* grad) {
  if (B < 0 || C <= 0) throw std::invalid_argument("softmax_ce: need B >= 0 and C > 0");
  if (B == 0) return 0.0f;

  // Per-row partials in a buffer, summed in a fixed order below (deterministic loss).
  std::vector<double> row_loss(static_cast<size_t>(B));
  const double inv_b = 1.0 / double(B);

#pragma omp parallel
  {
    std::vector<double> e(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < B; ++i) {
      float* g = grad ? grad + i * C : nullptr;
      row_loss[i] = ce_row(logits + i * C, labels[i], C, inv_b, g, e.data());
    }
  }

  double total = 0.0;
  for (int64_t i = 0; i < B; ++i) total += row_loss[i];
  return float(total * inv_b);
}

}  // namespace sigmar::kernels
