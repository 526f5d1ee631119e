// Center loss (Wen et al. 2016; SPEC 2.2), CPU twin: the loss with its gradient, and the
// paper's center update.
//
// Loss: one pass per sample row forms x_i - c_{y_i} once (in float), writes the gradient from
// it and adds its square into float lanes; lanes and rows are added in double, rows in fixed
// blocks whose sums are added in block order, so threads never change the value.
// Update: the batch is cut into fixed blocks of rows; each block sums its members of every
// class in batch order, and the blocks' sums are added in block order, so the work is even
// whatever the class sizes and the order of every sum is fixed; absent classes are never
// written.
// The update sums in double, where the differences of two floats are exact.
#include "kernels/cpu_math.hpp"
#include "kernels/kernels.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

namespace {

// Rows per block of the loss sum (a fixed grouping: the result does not depend on threads).
constexpr int64_t kRowsPerBlock = 64;
// Below this many values a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 14;
// Rows per block of the update's partial class sums (fixed: the order of every sum is too).
constexpr int64_t kUpdateRows = 256;

}  // namespace

float center_loss(const float* x, const int32_t* labels, const float* centers, int64_t B, int64_t D,
                  float* grad_x) {
  if (B < 0 || D <= 0) throw std::invalid_argument("center_loss: need B >= 0 and D > 0");
  if (B == 0) return 0.0f;

  const int64_t blocks = (B + kRowsPerBlock - 1) / kRowsPerBlock;
  std::vector<double> block_sum(static_cast<size_t>(blocks));
  const float inv_b = float(1.0 / double(B));

#pragma omp parallel for schedule(static) if (B * D >= kParallelMin)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t i_end = std::min(B, (blk + 1) * kRowsPerBlock);
    double acc = 0.0;
    for (int64_t i = blk * kRowsPerBlock; i < i_end; ++i) {
      acc += cpu::sq_distance(x + i * D, centers + int64_t(labels[i]) * D, D, inv_b,
                      grad_x ? grad_x + i * D : nullptr);
    }
    block_sum[blk] = acc;
  }

  double total = 0.0;
  for (int64_t blk = 0; blk < blocks; ++blk) total += block_sum[blk];
  return float(total / (2.0 * double(B)));
}

void center_update(const float* x, const int32_t* labels, float* centers, int64_t B, int64_t D,
                   int64_t C, float alpha) {
  if (B < 0 || D <= 0 || C <= 0) throw std::invalid_argument("center_update: bad shape");
  if (!(alpha > 0.0f && alpha <= 1.0f))
    throw std::invalid_argument("center_update: alpha must lie in (0, 1]");

  // Class counts n_j.
  std::vector<int64_t> n(static_cast<size_t>(C), 0);
  for (int64_t i = 0; i < B; ++i) ++n[labels[i]];

  // Per block of rows, per class, Σ x_i over the block's members in batch order: each row is
  // read once, whole and in order (a stream the prefetcher follows), and added into its
  // class's row of the block's partial sums (in cache).
  const int64_t blocks = (B + kUpdateRows - 1) / kUpdateRows;
  std::vector<double> part(static_cast<size_t>(blocks * C * D), 0.0);
#pragma omp parallel if (B * D >= kParallelMin)
  {
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t i_end = std::min(B, (blk + 1) * kUpdateRows);
      for (int64_t i = blk * kUpdateRows; i < i_end; ++i) {
        double* s = part.data() + (blk * C + labels[i]) * D;
        const float* xi = x + i * D;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) s[d] += double(xi[d]);
      }
    }

    // The loop's closing barrier: every block's sums are complete before they are added into
    // block 0's, block after block (a fixed order), per class; then
    // Δc = Σ (c - x_i) / (1 + n) = (n·c - Σ x_i) / (1 + n); c ← c - α·Δc.
#pragma omp for schedule(static)
    for (int64_t j = 0; j < C; ++j) {
      // An absent class keeps its center bit-for-bit: not even rewritten with itself.
      if (n[j] == 0) continue;
      double* sum = part.data() + j * D;
      for (int64_t blk = 1; blk < blocks; ++blk) {
        const double* more = part.data() + (blk * C + j) * D;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) sum[d] += more[d];
      }
      float* c = centers + j * D;
      const double nj = double(n[j]), denom = 1.0 + nj;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) {
        const double delta = (nj * double(c[d]) - sum[d]) / denom;
        c[d] = float(double(c[d]) - double(alpha) * delta);
      }
    }
  }
}

}  // namespace sigmar::kernels
