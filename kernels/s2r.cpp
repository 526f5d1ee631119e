// σ²R loss (SPEC 2.4), CPU twin: the loss with its gradient, and the update of the loss state
// (class centers and class variances) by the center rule.
//
// Per sample, from the pre-update state: d = ‖x - c_y‖², z = (d - v_y)/(v_y + ε),
// s = sigmoid(k·z), w = 2s, loss term w·d. The gradient is (1/B)(w + d·∂w/∂d)(x - c_y) with
// ∂w/∂d = 2k·s(1 - s)/(v_y + ε); the detached option drops d·∂w/∂d.
// The per-sample scalars are done in double: z can be ~1e14 for a feature far from a center
// with v = 0, k·z can reach 1e30 and more, and s(1 - s) is formed as e/(1 + e)² from
// e = exp(-|k·z|), so it is exactly 0 (never inf·0) in the saturated tails.
// Speed: samples go in fixed blocks of rows, three passes per block while its rows are in L1:
// d per row (float differences squared into float lanes, the lanes added in double); the
// weights of the whole block as one vectorised loop (our own exp, no libm call per row); the
// gradient rows. The blocks' loss terms are added in block order, so the result does not
// depend on the number of threads.
#include "kernels/cpu_math.hpp"
#include "kernels/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

namespace {

// Rows per block (their features, 64·D floats, stay in L1 between the passes at D = 128).
constexpr int64_t kRowsPerBlock = 64;
// Below this many values a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 14;
// One block of R rows: returns Σ w_i d_i and writes the gradient rows (if g is given).
double s2r_block(const float* x, const int32_t* labels, const float* centers,
                 const float* variances, int64_t R, int64_t D, S2RParams p, double inv_b,
                 float* g) {
  double d[kRowsPerBlock], v[kRowsPerBlock], term[kRowsPerBlock];
  float f[kRowsPerBlock];

  // Pass 1: the center error d of each row, and its class variance.
  for (int64_t r = 0; r < R; ++r) {
    d[r] = cpu::sq_distance(x + r * D, centers + int64_t(labels[r]) * D, D, 0.0f, nullptr);
    v[r] = variances[labels[r]];
  }

  // Pass 2, across the block: z measures d against the class variance, w = 2·sigmoid(k·z)
  // from e = exp(-|k·z|) in the two-branch stable form, s(1 - s) = e/(1 + e)² (exactly 0 in
  // the tails), and the gradient factor w + d·∂w/∂d with k·s(1-s) formed first, so a 0 tail
  // stays 0 even when d/(v+ε) is huge (d ≤ ~1e77 is finite, far beyond float features).
  const double k = p.slope, eps = p.eps, full = p.detached ? 0.0 : 1.0;
#pragma omp simd
  for (int64_t r = 0; r < R; ++r) {
    const double ve = v[r] + eps;
    const double t = k * ((d[r] - v[r]) / ve);
    const double e = cpu::exp_nonpositive(-std::fabs(t));
    const double q = 1.0 / (1.0 + e);
    const double s = t >= 0.0 ? q : e * q;
    const double w = 2.0 * s;
    term[r] = w * d[r];
    const double dw = full * (2.0 * (k * (e * q * q)) * (d[r] / ve));
    f[r] = float((w + dw) * inv_b);
  }

  // Pass 3: ∂L/∂x_i = f_i·(x_i - c_{y_i}), the row still in L1 from pass 1.
  if (g) {
    for (int64_t r = 0; r < R; ++r) {
      const float* xr = x + r * D;
      const float* c = centers + int64_t(labels[r]) * D;
      float* gr = g + r * D;
      const float fr = f[r];
#pragma omp simd
      for (int64_t j = 0; j < D; ++j) gr[j] = fr * (xr[j] - c[j]);
    }
  }

  double total = 0.0;
  for (int64_t r = 0; r < R; ++r) total += term[r];
  return total;
}

}  // namespace

float s2r_loss(const float* x, const int32_t* labels, const float* centers, const float* variances,
               int64_t B, int64_t D, S2RParams p, float* grad_x) {
  if (B < 0 || D <= 0) throw std::invalid_argument("s2r_loss: need B >= 0 and D > 0");
  if (!(p.slope > 0.0f) || !(p.eps > 0.0f))
    throw std::invalid_argument("s2r_loss: slope k and eps must be > 0");
  if (B == 0) return 0.0f;

  const int64_t blocks = (B + kRowsPerBlock - 1) / kRowsPerBlock;
  std::vector<double> block_sum(static_cast<size_t>(blocks));
  const double inv_b = 1.0 / double(B);

#pragma omp parallel for schedule(static) if (B * D >= kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t i0 = blk * kRowsPerBlock, R = std::min(kRowsPerBlock, B - i0);
    block_sum[blk] = s2r_block(x + i0 * D, labels + i0, centers, variances, R, D, p, inv_b,
                               grad_x ? grad_x + i0 * D : nullptr);
  }

  double total = 0.0;
  for (int64_t blk = 0; blk < blocks; ++blk) total += block_sum[blk];
  return float(total * 0.5 * inv_b);
}

void s2r_update(const float* x, const int32_t* labels, float* centers, float* variances, int64_t B,
                int64_t D, int64_t C, float alpha) {
  if (B < 0 || D <= 0 || C <= 0) throw std::invalid_argument("s2r_update: bad shape");
  if (!(alpha > 0.0f && alpha <= 1.0f))
    throw std::invalid_argument("s2r_update: alpha must lie in (0, 1]");

  // d_i with the OLD centers, before any center moves.
  std::vector<double> dist(static_cast<size_t>(B));
#pragma omp parallel for schedule(static) if (B * D >= kParallelMin)
  for (int64_t i = 0; i < B; ++i)
    dist[i] = cpu::sq_distance(x + i * D, centers + int64_t(labels[i]) * D, D, 0.0f, nullptr);

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
