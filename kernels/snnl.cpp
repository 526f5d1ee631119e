// Soft nearest neighbour loss (Frosst, Papernot, Hinton 2019; SPEC 2.3), CPU twin: the loss and
// its exact gradient in one call.
//
// With a_ik = -d_ik / T and d_ik = ‖x_i - x_k‖², anchor i's term is
//   ℓ_i = logsumexp_{k≠i} a_ik - logsumexp_{j≠i, y_j=y_i} a_ij.
// Writing p_ik for the softmax of a_i· over all k≠i and q_ik for the softmax over i's
// same-class partners (0 elsewhere), ∂ℓ_i/∂d_ik = -(p_ik - q_ik)/T. Since d_ik = d_ki, the
// pair (i,k) collects W_ik = g_ik + g_ki, where g_ik = -(p_ik - q_ik)/(T·N) (zero when i is not
// a counted anchor) and N is the number of counted anchors; then
//   ∂L/∂x_i = 2 Σ_k W_ik (x_i - x_k) = 2 (rowsum(W)_i x_i - (W X)_i).
//
// Both B²·D parts are matrix products, so they run as register-tiled GEMMs:
// (1) the Gram matrix X Xᵀ, then d_ik = ‖x_i‖² + ‖x_k‖² - 2 x_i·x_k clamped at ≥ 0 (SPEC);
// (2) one pass per anchor row: shifted log-sum-exps, ℓ_i, and g_i· written over the row;
// (3) W = G + Gᵀ by tiles; (4) the gradient rows from W X.
// Why double and our own GEMM rather than sgemm: the Gram form loses ~D·ε·‖x‖² to
// cancellation, so in float close points (the ones that dominate each softmax) would get
// distances wrong by ~1e-6·‖x‖², too much once divided by a small T; and the gradient is a
// difference of two sums of B terms that must stay within a few float ulps of the exact
// derivative. In double both errors are ~1e-16·‖x‖², and the features are first centred on
// the batch mean (distances do not change) so that ‖x‖² is the batch's spread, not its offset.
// Every value is computed from its own tile or row in a fixed order, and the per-anchor losses
// are added in anchor order, so the result does not depend on the number of threads.
// TODO(speed): the double products make this twin 2.1-2.4x its float op chain at B = 1024,
// D = 128 on the Zen 4 development machine, short of the kernel issue's 3x; a float fast
// path would need its own accuracy contract and tests (tools/KERNELS.md).
// Memory: one B×B double matrix (8 MiB at B = 1024) and the features in double, kept per
// calling thread between calls so that a training loop does not allocate them every step.
#include "kernels/cpu_math.hpp"
#include "kernels/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

namespace {

// GEMM micro tile: kMr rows by kNr columns of accumulators stay in vector registers
// (16 registers of 8 doubles) while the inner dimension streams past.
constexpr int64_t kMr = 8;
constexpr int64_t kNr = 16;
// Tile edge for the two transposing passes: mirroring the distances, and W = G + Gᵀ.
constexpr int64_t kTile = 64;
// Largest lag (m_pos - m_all)/T between an anchor's nearest partner and its nearest sample
// for which q's numerators are derived from p's instead of taking their own exponentials.
constexpr double kShiftMax = 200.0;
// Below this many pair-features (B²·D) a parallel region costs more than it saves.
constexpr int64_t kParallelMin = 1 << 16;

using Tile = double[kMr][kNr];

// acc[r][j] = Σ_{k<K} a[r·lda + k] · b[k·ldb + j]. Per k: kMr scalars of a broadcast against
// kNr contiguous values of b, kMr·kNr independent fused multiply-adds.
inline void tile_product(const double* a, int64_t lda, const double* b, int64_t ldb, int64_t K,
                         Tile& acc) {
  for (int64_t r = 0; r < kMr; ++r)
    for (int64_t j = 0; j < kNr; ++j) acc[r][j] = 0.0;
  for (int64_t k = 0; k < K; ++k) {
    const double* bk = b + k * ldb;
#pragma GCC unroll 8
    for (int64_t r = 0; r < kMr; ++r) {
      const double ar = a[r * lda + k];
#pragma omp simd simdlen(8)
      for (int64_t j = 0; j < kNr; ++j) acc[r][j] += ar * bk[j];
    }
  }
}


// Scratch kept between calls on the calling thread (resized, never shrunk).
// The B-side operand of each product is packed in panels of kNr columns, so that a micro
// tile reads one contiguous stream instead of kNr-wide pieces at a large power-of-two stride.
struct Scratch {
  std::vector<double> xc;    // centred features [Bp, Dp], zero padding
  std::vector<double> xt;    // their transpose in panels [Bp/kNr][D][kNr]: B side of X Xᵀ
  std::vector<double> xp;    // xc in panels [Dp/kNr][B][kNr]: B side of W X
  std::vector<double> norm;  // ‖x_i‖² of the centred features [Bp], zero past B
  std::vector<double> m;     // the B×B matrix, row stride ld
};

// Centred copies of x in double (padding zero), in the three layouts above, and their norms.
// Every element is written once (no zero fill first), each layout in its own storage order.
void centre(const float* x, int64_t B, int64_t D, int64_t Bp, int64_t Dp, Scratch& s) {
  s.xc.resize(static_cast<size_t>(Bp * Dp));
  s.xt.resize(static_cast<size_t>(D * Bp));
  s.xp.resize(static_cast<size_t>(B * Dp));
  s.norm.resize(static_cast<size_t>(Bp));

  // The batch mean per feature, in double and sample order.
  std::vector<double> mean(static_cast<size_t>(D), 0.0);
  for (int64_t i = 0; i < B; ++i) {
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) mean[d] += double(x[i * D + d]);
  }
  for (int64_t d = 0; d < D; ++d) mean[d] /= double(B);

  const bool par = B * D >= kParallelMin;
#pragma omp parallel if (par)
  {
    // Rows (the padding rows and columns are zero), and their squared norms.
#pragma omp for schedule(static)
    for (int64_t i = 0; i < Bp; ++i) {
      double* row = s.xc.data() + i * Dp;
      double n = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        row[d] = i < B ? double(x[i * D + d]) - mean[d] : 0.0;
        n += row[d] * row[d];
      }
      std::fill(row + D, row + Dp, 0.0);
      s.norm[i] = n;
    }
    // The loop's closing barrier: all rows exist before they are rearranged below.
#pragma omp for schedule(static)
    for (int64_t cb = 0; cb < Bp / kNr; ++cb)
      for (int64_t d = 0; d < D; ++d)
        for (int64_t j = 0; j < kNr; ++j)
          s.xt[(cb * D + d) * kNr + j] = s.xc[(cb * kNr + j) * Dp + d];
#pragma omp for schedule(static)
    for (int64_t db = 0; db < Dp / kNr; ++db)
      for (int64_t i = 0; i < B; ++i)
        for (int64_t j = 0; j < kNr; ++j)
          s.xp[(db * B + i) * kNr + j] = s.xc[i * Dp + db * kNr + j];
  }
}

// Step 1: m[i·ld + k] = clamp(‖x_i‖² + ‖x_k‖² - 2 x_i·x_k, ≥ 0) for i, k < B.
// The matrix is symmetric, so only the tiles on or right of each row block's diagonal
// 16×16 block are multiplied (the diagonal blocks in full, by their two row blocks); each
// tile's results go out as contiguous row pieces. A second pass then copies the upper part
// into the lower one by square tiles, which reads columns only inside a tile that stays in
// cache. (Writing each tile's mirror directly scatters single values down 16 rows and cost
// more than its FMAs.)
void distances(const Scratch& s, int64_t B, int64_t D, int64_t Bp, int64_t Dp, int64_t ld,
               double* m) {
  const int64_t row_blocks = Bp / kMr, col_blocks = Bp / kNr;
  const bool par = B * B * D >= kParallelMin;
#pragma omp parallel if (par)
  {
#pragma omp for schedule(dynamic)
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const int64_t i0 = rb * kMr;
      for (int64_t cb = i0 / kNr; cb < col_blocks; ++cb) {
        const int64_t k0 = cb * kNr;
        Tile acc;
        tile_product(s.xc.data() + i0 * Dp, Dp, s.xt.data() + k0 * D, kNr, D, acc);
        // Whole 16-wide pieces, padding columns included (they are never read).
        for (int64_t r = 0; r < kMr && i0 + r < B; ++r) {
          const double ni = s.norm[i0 + r];
          double* out = m + (i0 + r) * ld + k0;
#pragma omp simd
          for (int64_t j = 0; j < kNr; ++j) {
            const double d = ni + s.norm[k0 + j] - 2.0 * acc[r][j];
            out[j] = d > 0.0 ? d : 0.0;  // rounding can dip below 0
          }
        }
      }
    }
    // The loop's closing barrier: the upper part is complete before it is mirrored.
    // Row i has columns from (i / kNr)·kNr on; the ones left of that come from column i.
    const int64_t tiles = (B + kTile - 1) / kTile;
#pragma omp for schedule(dynamic)
    for (int64_t ti = 0; ti < tiles; ++ti) {
      const int64_t i_end = std::min(B, (ti + 1) * kTile);
      for (int64_t tk = 0; tk <= ti; ++tk) {
        const int64_t k_begin = tk * kTile;
        for (int64_t i = ti * kTile; i < i_end; ++i) {
          const int64_t k_end = std::min((tk + 1) * kTile, i / kNr * kNr);
          for (int64_t k = k_begin; k < k_end; ++k) m[i * ld + k] = m[k * ld + i];
        }
      }
    }
  }
}

// Step 2 for one counted anchor i: returns ℓ_i and overwrites row[k] with g_ik.
// q is scratch for B values.
double anchor_row(double* row, const int32_t* labels, int64_t B, int64_t i, double inv_t,
                  double scale, double* q) {
  const int32_t yi = labels[i];
  // Self is excluded by index: at +inf it is nobody's nearest and its exponential is 0.
  row[i] = std::numeric_limits<double>::infinity();

  // The maxima of a_ik are the minima of the distance, over all and over the partners.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double m_all = kInf, m_pos = kInf;
#pragma omp simd reduction(min : m_all, m_pos)
  for (int64_t k = 0; k < B; ++k) {
    const double d = row[k];
    const double dp = labels[k] == yi ? d : kInf;
    m_all = d < m_all ? d : m_all;
    m_pos = dp < m_pos ? dp : m_pos;
  }

  // Shifted sums: every exponent is ≤ 0 and each nearest neighbour contributes exactly 1.
  // p's numerators go back into row[], q's (zero off the partners) into q[].
  double s_all = 0.0, s_pos = 0.0;
  const double shift = (m_pos - m_all) * inv_t;  // ≥ 0: the nearest partner's lag
  if (shift <= kShiftMax) {
    // One exponential per pair: a partner's q numerator is its p numerator times e^shift.
    // Only partners below e^-700 of the nearest overall vanish, and with the shift this
    // small they are below e^-(700 - kShiftMax) of the nearest partner: nothing in double.
    const double lift = std::exp(shift);
#pragma omp simd reduction(+ : s_all, s_pos)
    for (int64_t k = 0; k < B; ++k) {
      const double e = cpu::exp_nonpositive((m_all - row[k]) * inv_t);
      const double qk = labels[k] == yi ? e * lift : 0.0;
      row[k] = e;
      q[k] = qk;
      s_all += e;
      s_pos += qk;
    }
  } else {
    // The nearest partner is far behind the nearest sample (T → 0, CASE 9): each sum gets
    // its own shift, or every partner's p numerator would underflow to 0.
#pragma omp simd reduction(+ : s_all, s_pos)
    for (int64_t k = 0; k < B; ++k) {
      const double d = row[k];
      const double e = cpu::exp_nonpositive((m_all - d) * inv_t);
      const double qk = labels[k] == yi ? cpu::exp_nonpositive((m_pos - d) * inv_t) : 0.0;
      row[k] = e;
      q[k] = qk;
      s_all += e;
      s_pos += qk;
    }
  }

  // ℓ_i = (m_pos - m_all)/T + log s_all - log s_pos: no large terms cancel, even as T → 0.
  const double loss = (m_pos - m_all) * inv_t + std::log(s_all) - std::log(s_pos);

  // g_ik = scale·(p_ik - q_ik), scale = -1/(T·N).
  const double p_scale = scale / s_all, q_scale = scale / s_pos;
#pragma omp simd
  for (int64_t k = 0; k < B; ++k) row[k] = row[k] * p_scale - q[k] * q_scale;  // 0 at k = i
  return loss;
}

// Step 3: W = G + Gᵀ in place, one tile pair per task so no two threads touch a cell; then
// rowsum[i] = Σ_k W_ik in column order.
void symmetrise(double* g, int64_t B, int64_t ld, double* rowsum) {
  const int64_t tiles = (B + kTile - 1) / kTile;
#pragma omp parallel if (B * B >= kParallelMin)
  {
#pragma omp for schedule(dynamic)
    for (int64_t ti = 0; ti < tiles; ++ti) {
      for (int64_t tk = ti; tk < tiles; ++tk) {
        const int64_t i_end = std::min(B, (ti + 1) * kTile);
        const int64_t k_end = std::min(B, (tk + 1) * kTile);
        for (int64_t i = ti * kTile; i < i_end; ++i) {
          for (int64_t k = std::max(tk * kTile, i + 1); k < k_end; ++k) {
            const double s = g[i * ld + k] + g[k * ld + i];
            g[i * ld + k] = s;
            g[k * ld + i] = s;
          }
        }
      }
    }
    // The loop's closing barrier: every tile pair is summed before any row is.
#pragma omp for schedule(static)
    for (int64_t i = 0; i < B; ++i) {
      double s = 0.0;
      for (int64_t k = 0; k < B; ++k) s += g[i * ld + k];
      rowsum[i] = s;
    }
  }
}

// Step 4: ∂L/∂x_i = 2 (rowsum(W)_i x_i - (W X)_i), with X centred (W's rows sum the
// differences x_i - x_k, so the shift cancels and ‖x‖ stays small) and W X tile by tile.
void gradient_rows(const Scratch& s, const double* w, const double* rowsum, int64_t B, int64_t D,
                   int64_t Bp, int64_t Dp, int64_t ld, float* grad_x) {
  const int64_t row_blocks = Bp / kMr, col_blocks = Dp / kNr;
#pragma omp parallel for collapse(2) schedule(static) if (B * B * D >= kParallelMin)
  for (int64_t rb = 0; rb < row_blocks; ++rb) {
    for (int64_t cb = 0; cb < col_blocks; ++cb) {
      const int64_t i0 = rb * kMr, j0 = cb * kNr;
      Tile acc;
      tile_product(w + i0 * ld, ld, s.xp.data() + j0 * B, kNr, B, acc);
      for (int64_t r = 0; r < kMr && i0 + r < B; ++r) {
        const double* xi = s.xc.data() + (i0 + r) * Dp;
        for (int64_t j = 0; j < kNr && j0 + j < D; ++j)
          grad_x[(i0 + r) * D + j0 + j] = float(2.0 * (rowsum[i0 + r] * xi[j0 + j] - acc[r][j]));
      }
    }
  }
}

}  // namespace

float snnl(const float* x, const int32_t* labels, int64_t B, int64_t D, float temperature,
           float* grad_x) {
  if (B < 0 || D <= 0) throw std::invalid_argument("snnl: need B >= 0 and D > 0");
  if (!(temperature > 0.0f) || !std::isfinite(temperature))
    throw std::invalid_argument("snnl: temperature must be finite and > 0");
  if (grad_x) std::fill(grad_x, grad_x + B * D, 0.0f);

  // Which anchors count: those whose class occurs at least twice (labels are ≥ 0, checked).
  int32_t max_label = -1;
  for (int64_t i = 0; i < B; ++i) {
    if (labels[i] < 0) throw std::invalid_argument("snnl: negative label");
    max_label = std::max(max_label, labels[i]);
  }
  std::vector<int64_t> count(static_cast<size_t>(max_label) + 1, 0);
  for (int64_t i = 0; i < B; ++i) ++count[labels[i]];
  int64_t n_anchors = 0;
  for (int64_t i = 0; i < B; ++i) n_anchors += count[labels[i]] >= 2;
  // No anchor qualifies: the loss is defined as 0 with zero gradient (already written).
  if (n_anchors == 0) return 0.0f;

  // Padded sizes: whole micro tiles everywhere, the padding zero (and never stored).
  const int64_t Bp = (B + kNr - 1) / kNr * kNr, Dp = (D + kNr - 1) / kNr * kNr;
  thread_local Scratch s;
  centre(x, B, D, Bp, Dp, s);
  // The matrix's row stride is kept off a power of two: the kMr rows a tile reads at once
  // would otherwise fall into the same few cache sets.
  const int64_t ld = Bp + kNr / 2;
  if (s.m.size() < static_cast<size_t>(Bp * ld)) s.m.resize(static_cast<size_t>(Bp * ld));
  double* m = s.m.data();
  distances(s, B, D, Bp, Dp, ld, m);

  const double inv_t = 1.0 / double(temperature);
  const double scale = -inv_t / double(n_anchors);
  std::vector<double> row_loss(static_cast<size_t>(B), 0.0);
#pragma omp parallel if (B * B >= kParallelMin)
  {
    // Each thread's q scratch is kept between calls (OpenMP reuses its threads).
    thread_local std::vector<double> q;
    if (q.size() < static_cast<size_t>(B)) q.resize(static_cast<size_t>(B));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < B; ++i) {
      double* row = m + i * ld;
      if (count[labels[i]] < 2) {
        // Not an anchor: no ℓ_i, and g_i· = 0 (it still appears as others' neighbour).
        std::fill(row, row + B, 0.0);
        continue;
      }
      row_loss[i] = anchor_row(row, labels, B, i, inv_t, scale, q.data());
    }
  }

  // Mean over counted anchors, added in anchor order.
  double total = 0.0;
  for (int64_t i = 0; i < B; ++i) total += row_loss[i];

  if (grad_x) {
    // Rows past B must be finite for the padded tiles of W X (their results are dropped).
    std::fill(m + B * ld, m + Bp * ld, 0.0);
    std::vector<double> rowsum(static_cast<size_t>(B));
    symmetrise(m, B, ld, rowsum.data());
    gradient_rows(s, m, rowsum.data(), B, D, Bp, Dp, ld, grad_x);
  }
  return float(total / double(n_anchors));
}

}  // namespace sigmar::kernels
