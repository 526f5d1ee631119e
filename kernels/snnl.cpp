// Soft nearest neighbour loss (Frosst, Papernot, Hinton 2019; SPEC 2.3), CPU twin: the loss and
// its exact gradient in one call.
//
// With a_ik = -d_ik / T and d_ik = ‖x_i - x_k‖², anchor i's term is
//   ℓ_i = logsumexp_{k≠i} a_ik - logsumexp_{j≠i, y_j=y_i} a_ij.
// Writing p_ik for the softmax of a_i· over all k≠i and q_ik for the softmax over i's
// same-class partners (0 elsewhere), ∂ℓ_i/∂d_ik = -(p_ik - q_ik)/T. Since d_ik = d_ki, the
// pair (i,k) collects G_ik = g_ik + g_ki, where g_ik = -(p_ik - q_ik)/(T·N) (zero when i is not
// a counted anchor) and N is the number of counted anchors; then
//   ∂L/∂x_i = 2 Σ_k G_ik (x_i - x_k).
// Steps: (1) the B×B distance matrix by column blocks (each pair once, mirrored); (2) one pass
// per anchor row: shifted log-sum-exps, ℓ_i, and g_i· written over the row in place; (3)
// G + Gᵀ by tiles; (4) the gradient rows. Every value is computed from its own row or block,
// and the per-anchor losses are added in anchor order, so the result does not depend on the
// number of threads. Memory: one B×B double matrix (8 MiB at B = 1024) and xᵀ in double.
#include "kernels/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace sigmar::kernels {

namespace {

// Tile edge for the in-place transpose-add of step 3.
constexpr int64_t kTile = 64;
// Columns of the distance matrix formed together: their partial sums stay in registers.
constexpr int64_t kCols = 16;
// Independent partial sums in a dot product, so the adds do not wait on one another.
constexpr int64_t kLanes = 16;

// Pairwise sum of the kLanes partial sums: a short dependency chain and a fixed order.
static_assert(kLanes == 16, "add_lanes folds exactly 16 lanes");
inline double add_lanes(double* lane) {
#pragma omp simd
  for (int64_t j = 0; j < 8; ++j) lane[j] += lane[j + 8];
#pragma omp simd
  for (int64_t j = 0; j < 4; ++j) lane[j] += lane[j + 4];
  return (lane[0] + lane[2]) + (lane[1] + lane[3]);
}

// Step 1: dist[i*B + k] = ‖x_i - x_k‖² for i ≠ k (diagonal 0), from xt = xᵀ [D,B] in double.
// Differences, not the Gram form ‖a‖² + ‖b‖² - 2a·b: the direct form cannot cancel, so close
// points get an accurate (never negative) distance. For one row i and kCols columns k, the
// loop over features reads a contiguous piece of each xt row and keeps kCols sums in
// registers; each pair's sum runs over d in order. A task owns one column block and forms
// (i, k) for i < k only, writing the mirror (k, i) too, so no two tasks share a cell.
void distance_matrix(const double* xt, int64_t B, int64_t D, double* dist) {
  const int64_t blocks = (B + kCols - 1) / kCols;
#pragma omp parallel for schedule(dynamic)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t k0 = blk * kCols, k_end = std::min(B, k0 + kCols);
    for (int64_t i = 0; i < k_end; ++i) {
      double acc[kCols] = {};
      if (k_end - k0 == kCols) {
        for (int64_t d = 0; d < D; ++d) {
          const double xid = xt[d * B + i];
          const double* row = xt + d * B + k0;
#pragma omp simd
          for (int64_t j = 0; j < kCols; ++j) {
            const double diff = row[j] - xid;
            acc[j] += diff * diff;
          }
        }
      } else {
        for (int64_t d = 0; d < D; ++d) {
          const double xid = xt[d * B + i];
          for (int64_t j = 0; j < k_end - k0; ++j) {
            const double diff = xt[d * B + k0 + j] - xid;
            acc[j] += diff * diff;
          }
        }
      }
      for (int64_t k = std::max(k0, i + 1); k < k_end; ++k) {
        dist[i * B + k] = acc[k - k0];
        dist[k * B + i] = acc[k - k0];
      }
      if (i >= k0) dist[i * B + i] = 0.0;
    }
  }
}

// Step 2 for one counted anchor i: returns ℓ_i and overwrites row[k] with g_ik.
// pos_idx / pos_e are scratch for the same-class partners (at most B - 1 of them).
double anchor_row(double* row, const int32_t* labels, int64_t B, int64_t i, double inv_t,
                  double scale, std::vector<int64_t>& pos_idx, std::vector<double>& pos_e) {
  const int32_t yi = labels[i];
  pos_idx.clear();
  pos_e.clear();

  // The maxima of a_ik are the minima of the clamped distance; self is excluded by index.
  double m_all = std::numeric_limits<double>::infinity(), m_pos = m_all;
  for (int64_t k = 0; k < B; ++k) {
    if (k == i) continue;
    const double d = std::max(row[k], 0.0);
    row[k] = d;
    m_all = std::min(m_all, d);
    if (labels[k] == yi) {
      m_pos = std::min(m_pos, d);
      pos_idx.push_back(k);
    }
  }

  // Shifted sums: every exponent is ≤ 0 and the nearest neighbour contributes exactly 1.
  // The partners' terms are taken first, while row[] still holds distances.
  double s_pos = 0.0;
  for (const int64_t k : pos_idx) {
    const double e = std::exp((m_pos - row[k]) * inv_t);
    pos_e.push_back(e);
    s_pos += e;
  }
  double s_all = 0.0;
  row[i] = 0.0;
  for (int64_t k = 0; k < B; ++k) {
    if (k == i) continue;
    const double e = std::exp((m_all - row[k]) * inv_t);
    row[k] = e;  // kept for p_ik below
    s_all += e;
  }

  // ℓ_i = (m_pos - m_all)/T + log s_all - log s_pos: no large terms cancel, even as T → 0.
  const double loss = (m_pos - m_all) * inv_t + std::log(s_all) - std::log(s_pos);

  // g_ik = scale·(p_ik - q_ik), scale = -1/(T·N); q is non-zero only on the partners.
  const double p_scale = scale / s_all, q_scale = scale / s_pos;
  for (int64_t k = 0; k < B; ++k) row[k] *= p_scale;  // row[i] stays 0
  for (size_t p = 0; p < pos_idx.size(); ++p) row[pos_idx[p]] -= pos_e[p] * q_scale;
  return loss;
}

// Step 3: G ← G + Gᵀ in place, one tile pair per task so no two threads touch a cell.
void symmetrise(double* g, int64_t B) {
  const int64_t tiles = (B + kTile - 1) / kTile;
#pragma omp parallel for schedule(dynamic)
  for (int64_t ti = 0; ti < tiles; ++ti) {
    for (int64_t tk = ti; tk < tiles; ++tk) {
      const int64_t i_end = std::min(B, (ti + 1) * kTile);
      const int64_t k_end = std::min(B, (tk + 1) * kTile);
      for (int64_t i = ti * kTile; i < i_end; ++i) {
        for (int64_t k = std::max(tk * kTile, i + 1); k < k_end; ++k) {
          const double s = g[i * B + k] + g[k * B + i];
          g[i * B + k] = s;
          g[k * B + i] = s;
        }
      }
    }
  }
}

// Step 4: ∂L/∂x_i = 2 Σ_k G_ik (x_i - x_k), in double. With xt = xᵀ [D,B], each output
// element is one reduction over k along two contiguous rows (G_i· and xt_d·), so its partial
// sums live in vector registers; G_ii = 0, so self adds nothing.
void gradient_rows(const double* xt, const double* g, int64_t B, int64_t D, float* grad_x) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < B; ++i) {
    const double* gi = g + i * B;
    for (int64_t d = 0; d < D; ++d) {
      const double* xd = xt + d * B;
      const double xid = xd[i];
      double lane[kLanes] = {};
      int64_t k = 0;
      for (; k + kLanes <= B; k += kLanes) {
#pragma omp simd
        for (int64_t j = 0; j < kLanes; ++j) lane[j] += gi[k + j] * (xid - xd[k + j]);
      }
      for (int64_t j = 0; k + j < B; ++j) lane[j] += gi[k + j] * (xid - xd[k + j]);
      grad_x[i * D + d] = float(2.0 * add_lanes(lane));
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

  // xᵀ in double once: both B²·D passes read it along contiguous rows, without conversions.
  std::vector<double> xt(static_cast<size_t>(B * D));
  for (int64_t i = 0; i < B; ++i)
    for (int64_t d = 0; d < D; ++d) xt[d * B + i] = x[i * D + d];
  // One B×B buffer: distances, then g_ik row by row, then G = g + gᵀ.
  std::vector<double> m(static_cast<size_t>(B * B));
  distance_matrix(xt.data(), B, D, m.data());

  const double inv_t = 1.0 / double(temperature);
  const double scale = -inv_t / double(n_anchors);
  std::vector<double> row_loss(static_cast<size_t>(B), 0.0);
#pragma omp parallel
  {
    std::vector<int64_t> pos_idx;
    std::vector<double> pos_e;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < B; ++i) {
      double* row = m.data() + i * B;
      if (count[labels[i]] < 2) {
        // Not an anchor: no ℓ_i, and g_i· = 0 (it still appears as others' neighbour).
        std::fill(row, row + B, 0.0);
        continue;
      }
      row_loss[i] = anchor_row(row, labels, B, i, inv_t, scale, pos_idx, pos_e);
    }
  }

  // Mean over counted anchors, added in anchor order.
  double total = 0.0;
  for (int64_t i = 0; i < B; ++i) total += row_loss[i];

  if (grad_x) {
    symmetrise(m.data(), B);
    gradient_rows(xt.data(), m.data(), B, D, grad_x);
  }
  return float(total / double(n_anchors));
}

}  // namespace sigmar::kernels
