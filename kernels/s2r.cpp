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
#include "kernels/kernels.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

namespace {

// Rows per block (their features, 64·D floats, stay in L1 between the passes at D = 128).
constexpr int64_t kRowsPerBlock = 64;
// Below this many values a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 14;
// Partial sums per row: float lanes, each holding about D/kLanes squares.
constexpr int64_t kLanes = 16;

// ‖x - c‖² of one row: the differences in float, squared into kLanes independent float sums
// (no add waits on the one before, and each lane holds few terms), the lanes added pairwise
// in double. A sum of squares cannot cancel, so this is accurate to a few float ulps.
inline double center_error(const float* x, const float* c, int64_t D) {
  double acc = 0.0;
  int64_t j0 = 0;
  if (D >= kLanes) {
    float lane[kLanes] = {};
    for (; j0 + kLanes <= D; j0 += kLanes) {
#pragma omp simd
      for (int64_t j = 0; j < kLanes; ++j) {
        const float diff = x[j0 + j] - c[j0 + j];
        lane[j] += diff * diff;
      }
    }
    double l[kLanes];
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) l[j] = lane[j];
    for (int64_t h = kLanes / 2; h >= 1; h /= 2) {
#pragma omp simd
      for (int64_t j = 0; j < h; ++j) l[j] += l[j + h];
    }
    acc = l[0];
  }
  // The last D mod kLanes columns (all of them in a narrow row) straight into the double sum.
  for (; j0 < D; ++j0) {
    const float diff = x[j0] - c[j0];
    acc += double(diff) * double(diff);
  }
  return acc;
}

// exp(t) for t ≤ 0 (or NaN), to about 1e-13 relative, in straight-line code that
// vectorises: t = n·ln2 + r with |r| ≤ ln2/2, exp(r) by its Taylor polynomial of degree 11,
// 2^n built in the exponent bits. Below -700 (and at -inf) it is exactly 0.
inline double exp_nonpositive(double t) {
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 0.6931471805598903;     // ln 2 to 43 bits: n·kLn2Hi is exact
  constexpr double kLn2Lo = 5.497923018708371e-14;  // ln 2 - kLn2Hi
  constexpr double kRound = 6755399441055744.0;     // 1.5·2^52: adding it rounds to an integer
  const double tc = t < -700.0 ? -700.0 : t;        // keeps 2^n a normal number (NaN passes)

  // n = round(t·log2 e), left in the low mantissa bits of `shifted`.
  const double shifted = tc * kLog2e + kRound;
  const double n = shifted - kRound;
  const double r = (tc - n * kLn2Hi) - n * kLn2Lo;

  double p = 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;

  const uint64_t bits = (std::bit_cast<uint64_t>(shifted) + 1023) << 52;
  const double e = p * std::bit_cast<double>(bits);
  return t < -700.0 ? 0.0 : e;
}

// One block of R rows: returns Σ w_i d_i and writes the gradient rows (if g is given).
double s2r_block(const float* x, const int32_t* labels, const float* centers,
                 const float* variances, int64_t R, int64_t D, S2RParams p, double inv_b,
                 float* g) {
  double d[kRowsPerBlock], v[kRowsPerBlock], term[kRowsPerBlock];
  float f[kRowsPerBlock];

  // Pass 1: the center error d of each row, and its class variance.
  for (int64_t r = 0; r < R; ++r) {
    d[r] = center_error(x + r * D, centers + int64_t(labels[r]) * D, D);
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
    const double e = exp_nonpositive(-std::fabs(t));
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
    dist[i] = center_error(x + i * D, centers + int64_t(labels[i]) * D, D);

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
