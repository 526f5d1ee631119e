// Softmax cross-entropy, forward and backward in one pass (SPEC 2.1), CPU twin.
//
// Each row i of logits [B,C] is handled alone: subtract the row maximum m, sum exp(z - m) in
// double, and write loss_i = (m - z_y) + log(sum). Splitting lse - z_y that way keeps the two
// large terms from cancelling (z = ±1e8) and lets -inf logits drop out as exp(-inf) = 0.
//
// Speed: with C = 10 a row is shorter than one vector register, so a loop per row would run
// mostly in its scalar tail, and libm's exp is a scalar call. Rows are therefore taken in
// blocks of up to kBlock values: the shifted logits of the whole block go to a small double
// buffer on the stack, and cpu::exp_nonpositive() (kernels/cpu_math.hpp: branch-free,
// inlined) runs over that buffer as one flat loop the compiler vectorises. A row longer than
// kBlock is taken alone, in pieces of kBlock, and its exponentials are formed twice (for the
// sum, then for the gradient), so every row's values are the same on either path. Blocks are
// fixed by B and C only and their losses are added in block order: the result does not
// depend on the number of threads.
#include "kernels/cpu_math.hpp"
#include "kernels/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

namespace {

// Values per block (a 16 KiB double buffer per thread, in L1 with its logits and gradient).
constexpr int64_t kBlock = 2048;
// Below this many logits one thread finishes before a parallel region would have started.
constexpr int64_t kParallelMin = 8192;


// buf[r·w + k] = exp(z[r·C + k] - m[r]) for rows r < R and columns k < w of z. The difference
// of two floats is exact in double, so the only rounding is the exponential's own.
void shifted_exps(const float* z, int64_t C, int64_t R, int64_t w, const float* m, double* buf) {
  for (int64_t r = 0; r < R; ++r) {
    const double mr = m[r];
#pragma omp simd
    for (int64_t k = 0; k < w; ++k) buf[r * w + k] = double(z[r * C + k]) - mr;
  }
  // One flat loop over the whole block: full vectors even when w is 10.
#pragma omp simd simdlen(8)
  for (int64_t j = 0; j < R * w; ++j) buf[j] = cpu::exp_nonpositive(buf[j]);
}

// Below this row length the block's rows are reduced side by side, column by column: the rows'
// running maxima and sums are then independent of one another, where one row's own chain of
// C dependent steps (or one vector reduction per row of 10) would stall. Longer rows are
// reduced one at a time in vector lanes.
constexpr int64_t kSideBySide = 32;

// m[r] = max_k z[r·C + k] for rows r < R; NaN logits are skipped as fmax would skip them.
void block_max(const float* z, int64_t R, int64_t C, float* m) {
  std::fill(m, m + R, -std::numeric_limits<float>::infinity());
  if (C < kSideBySide) {
    for (int64_t k = 0; k < C; ++k) {
#pragma omp simd
      for (int64_t r = 0; r < R; ++r) m[r] = z[r * C + k] > m[r] ? z[r * C + k] : m[r];
    }
    return;
  }
  for (int64_t r = 0; r < R; ++r) {
    float mr = m[r];
#pragma omp simd reduction(max : mr)
    for (int64_t k = 0; k < C; ++k) mr = z[r * C + k] > mr ? z[r * C + k] : mr;
    m[r] = mr;
  }
}

// sum[r] = Σ_k e[r·C + k] for rows r < R, in double: the sum of up to C terms in [0, 1] and
// its log are then exact to float.
void block_sums(const double* e, int64_t R, int64_t C, double* sum) {
  std::fill(sum, sum + R, 0.0);
  if (C < kSideBySide) {
    for (int64_t k = 0; k < C; ++k) {
#pragma omp simd
      for (int64_t r = 0; r < R; ++r) sum[r] += e[r * C + k];
    }
    return;
  }
  for (int64_t r = 0; r < R; ++r) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < C; ++k) s += e[r * C + k];
    sum[r] = s;
  }
}

// The gradient of one row from its exponentials e: (e_k / sum - [k = y]) / B.
void write_grad(const double* e, int64_t w, double scale, float* g) {
#pragma omp simd
  for (int64_t k = 0; k < w; ++k) g[k] = float(e[k] * scale);
}

// Rows [r0, r0 + R) with R·C ≤ kBlock: returns the sum of their losses.
double short_rows(const float* z, const int32_t* y, int64_t R, int64_t C, double inv_b, float* g) {
  alignas(64) double buf[kBlock];
  alignas(64) float m[kBlock];
  alignas(64) double sum[kBlock];

  block_max(z, R, C, m);
  shifted_exps(z, C, R, C, m, buf);

  block_sums(buf, R, C, sum);

  // Σ_r log(sum_r) as the log of one product: sum_r ∈ [1, C], so the product is rescaled by
  // 2^-512 (exactly) whenever it grows past 2^512, and one log serves the whole block.
  double total = 0.0, prod = 1.0;
  int64_t halvings = 0;
  for (int64_t r = 0; r < R; ++r) {
    float* gr = g ? g + r * C : nullptr;
    // A row of all -inf, or one holding +inf, has no softmax: report an infinite loss (no
    // NaN) and give the row no gradient.
    if (!std::isfinite(m[r])) {
      if (gr) std::fill(gr, gr + C, 0.0f);
      total += std::numeric_limits<double>::infinity();
      continue;
    }
    // loss = logsumexp - z_y = (m - z_y) + log(sum); a -inf target gives +inf, honestly.
    const int32_t yr = y[r];
    total += double(m[r]) - double(z[r * C + yr]);
    prod *= sum[r];
    if (prod > 0x1p512) {
      prod *= 0x1p-512;
      halvings += 512;
    }
    if (gr) {
      write_grad(buf + r * C, C, inv_b / sum[r], gr);
      gr[yr] = float((buf[r * C + yr] / sum[r] - 1.0) * inv_b);
    }
  }
  return total + (std::log(prod) + double(halvings) * std::numbers::ln2);
}

// One row longer than kBlock, in pieces of kBlock columns: returns its loss.
double long_row(const float* z, int32_t y, int64_t C, double inv_b, float* g) {
  alignas(64) double buf[kBlock];
  float m;
  block_max(z, 1, C, &m);
  if (!std::isfinite(m)) {
    if (g) std::fill(g, g + C, 0.0f);
    return std::numeric_limits<double>::infinity();
  }

  // First the sum of the exponentials, piece by piece.
  double sum = 0.0;
  for (int64_t k0 = 0; k0 < C; k0 += kBlock) {
    const int64_t w = std::min(kBlock, C - k0);
    shifted_exps(z + k0, C, 1, w, &m, buf);
    double piece;
    block_sums(buf, 1, w, &piece);
    sum += piece;
  }
  const double loss = (double(m) - double(z[y])) + std::log(sum);

  // Then the same exponentials again for the gradient (cheaper than a row-long buffer).
  if (g) {
    for (int64_t k0 = 0; k0 < C; k0 += kBlock) {
      const int64_t w = std::min(kBlock, C - k0);
      shifted_exps(z + k0, C, 1, w, &m, buf);
      write_grad(buf, w, inv_b / sum, g + k0);
      if (y >= k0 && y < k0 + w) g[y] = float((buf[y - k0] / sum - 1.0) * inv_b);
    }
  }
  return loss;
}

}  // namespace

float softmax_ce(const float* logits, const int32_t* labels, int64_t B, int64_t C, float* grad) {
  if (B < 0 || C <= 0) throw std::invalid_argument("softmax_ce: need B >= 0 and C > 0");
  if (B == 0) return 0.0f;

  // Rows per block: as many as fit in kBlock values, at least one.
  const int64_t rows = std::max<int64_t>(1, kBlock / C);
  const int64_t blocks = (B + rows - 1) / rows;
  const double inv_b = 1.0 / double(B);

  // One loss per block, added in block order below (deterministic for any thread count).
  std::vector<double> block_loss(static_cast<size_t>(blocks));
#pragma omp parallel for schedule(static) if (B * C >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = b * rows, R = std::min(rows, B - r0);
    const float* z = logits + r0 * C;
    float* g = grad ? grad + r0 * C : nullptr;
    block_loss[b] = C <= kBlock ? short_rows(z, labels + r0, R, C, inv_b, g)
                                : long_row(z, labels[r0], C, inv_b, g);
  }

  double total = 0.0;
  for (int64_t b = 0; b < blocks; ++b) total += block_loss[b];
  return float(total * inv_b);
}

}  // namespace sigmar::kernels
