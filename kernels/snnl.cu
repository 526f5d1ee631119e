// Soft nearest neighbour loss (Frosst, Papernot, Hinton 2019; SPEC 2.3), GPU version of
// kernels/snnl.cpp, without ever storing the B×B distance matrix.
//
// With d_ik = ‖x_i − x_k‖² and a_ik = −d_ik/T, anchor i (one with a same-class partner) has
//   ℓ_i = logsumexp_{k≠i} a_ik − logsumexp_{j≠i, y_j=y_i} a_ij,
// and with p_ik, q_ik the two softmaxes (q zero off i's class) the exact gradient is
//   ∂L/∂x_i = −2/(T·N) Σ_{k≠i} c_ik (x_i − x_k),  c_ik = [i counts](p_ik − q_ik)
//                                                     + [k counts](p_ki − q_ki),
// N the number of anchors that count. Two passes over all pairs:
// 1. statistics: for each anchor, an online log-sum-exp over the other samples and over its
//    partners, kept as (smallest distance, Σ exp((d_min − d)/T)); the smallest distance is
//    the shift, so every exponent is ≤ 0 even as T → 0. This gives ℓ_i.
// 2. gradient: the distances again, each pair's c_ik from both endpoints' statistics, and the
//    sum Σ c_ik (x_i − x_k) in double; a last kernel applies −2/(T·N) once N is known.
//
// Parallelisation: a block of 16×16 threads owns 16 anchors (rows); it sweeps the samples in
// tiles of 16 columns. For each tile the rows' and columns' features go through shared
// memory 16 at a time; thread (ty, tx) forms the distance of pair (row ty, column tx). In
// pass 1 each thread keeps its own running statistics over columns tx, tx+16, ..., and the 16
// of a row are merged in tx order at the end. In pass 2 the tile's 16×16 coefficients go to
// shared memory and thread (ty, tx) adds them to features tx, tx+16, ... of row ty. The self
// pair is skipped by index; every sum has a fixed order: no atomics.
#include "kernels/common.cuh"
#include "kernels/kernels_cuda.cuh"

namespace sigmar::kernels::gpu {

namespace {

constexpr int kTile = 16;

// A running log-sum-exp of −d/T, shifted by its smallest distance: lse = −dmin/T + log(sum).
// (No member initialisers: arrays of it live in shared memory.)
struct ShiftedSum {
  double dmin;
  double sum;
};

__device__ inline ShiftedSum empty_sum() { return {INFINITY, 0.0}; }

__device__ inline void add_distance(ShiftedSum& acc, double d, double inv_t) {
  if (d < acc.dmin) {
    // A new nearest: rescale what was summed to the new shift (0·exp(−inf) = 0 at the start).
    acc.sum = acc.sum * exp((d - acc.dmin) * inv_t) + 1.0;
    acc.dmin = d;
  } else {
    acc.sum += exp((acc.dmin - d) * inv_t);
  }
}

__device__ inline ShiftedSum merge(ShiftedSum a, ShiftedSum b, double inv_t) {
  if (b.sum == 0.0) return a;  // an empty side adds nothing (and has dmin = inf)
  if (a.sum == 0.0) return b;
  const double m = fmin(a.dmin, b.dmin);
  return {m, a.sum * exp((m - a.dmin) * inv_t) + b.sum * exp((m - b.dmin) * inv_t)};
}

// Squared distance between row i0 + ty and column j0 + tx; every thread of the block must
// call it together (it stages features through shared memory). Rows or columns past B read
// zeros and their result is ignored by the caller.
__device__ double tile_distance(const float* x, int64_t B, int64_t D, int64_t i0, int64_t j0,
                                float (*rows)[kTile + 1], float (*cols)[kTile + 1]) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  double acc = 0.0;
  for (int64_t k0 = 0; k0 < D; k0 += kTile) {
    const int64_t k = k0 + tx;
    rows[ty][tx] = (i0 + ty < B && k < D) ? x[(i0 + ty) * D + k] : 0.0f;
    cols[ty][tx] = (j0 + ty < B && k < D) ? x[(j0 + ty) * D + k] : 0.0f;
    // Race prevented: both 16×16 feature tiles are complete before anyone reads them.
    __syncthreads();
    const int kmax = static_cast<int>(min(int64_t(kTile), D - k0));
    for (int kk = 0; kk < kmax; ++kk) {
      // Direct differences, not the Gram form: no cancellation, never negative.
      const double diff = double(rows[ty][kk]) - double(cols[tx][kk]);
      acc += diff * diff;
    }
    // Race prevented: nobody overwrites the tiles for the next features while others read.
    __syncthreads();
  }
  return acc;
}

// Per-anchor statistics, in the workspace as arrays of B doubles.
struct AnchorStats {
  double* dmin_all;
  double* sum_all;
  double* dmin_pos;
  double* sum_pos;
  double* ell;    // ℓ_i, 0 for anchors that do not count
  double* valid;  // 1 for anchors with a same-class partner, else 0
};

__global__ void snnl_stats(const float* x, const int32_t* labels, int64_t B, int64_t D,
                           double inv_t, AnchorStats st) {
  __shared__ float rows[kTile][kTile + 1], cols[kTile][kTile + 1];
  __shared__ ShiftedSum part_all[kTile][kTile], part_pos[kTile][kTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t i0 = int64_t(blockIdx.x) * kTile, i = i0 + ty;
  const int32_t yi = i < B ? labels[i] : -1;

  // This thread's share of row i: columns tx, tx + 16, ...
  ShiftedSum all = empty_sum(), pos = empty_sum();
  for (int64_t j0 = 0; j0 < B; j0 += kTile) {
    const double d = fmax(tile_distance(x, B, D, i0, j0, rows, cols), 0.0);
    const int64_t j = j0 + tx;
    if (i < B && j < B && j != i) {  // the self pair is excluded by index, never by d == 0
      add_distance(all, d, inv_t);
      if (labels[j] == yi) add_distance(pos, d, inv_t);
    }
  }
  part_all[ty][tx] = all;
  part_pos[ty][tx] = pos;
  // Race prevented: the row's merging thread reads the 16 shares only once all are stored.
  __syncthreads();
  if (tx != 0 || i >= B) return;

  // Merge the shares in tx order (fixed), then ℓ_i = (dmin_pos − dmin_all)/T + log Σ_all
  // − log Σ_pos: the two large shifts cancel before the logs are added.
  for (int t = 1; t < kTile; ++t) {
    all = merge(all, part_all[ty][t], inv_t);
    pos = merge(pos, part_pos[ty][t], inv_t);
  }
  const bool counts = pos.sum > 0.0;
  st.dmin_all[i] = all.dmin;
  st.sum_all[i] = all.sum;
  st.dmin_pos[i] = pos.dmin;
  st.sum_pos[i] = pos.sum;
  st.valid[i] = counts ? 1.0 : 0.0;
  st.ell[i] = counts ? (pos.dmin - all.dmin) * inv_t + log(all.sum) - log(pos.sum) : 0.0;
}

// c for one endpoint a of a pair at distance d: p_ab − q_ab, 0 when a does not count.
__device__ inline double endpoint_coef(const AnchorStats& st, int64_t a, double d, bool same,
                                       double inv_t) {
  if (st.valid[a] == 0.0) return 0.0;
  const double p = exp((st.dmin_all[a] - d) * inv_t) / st.sum_all[a];
  const double q = same ? exp((st.dmin_pos[a] - d) * inv_t) / st.sum_pos[a] : 0.0;
  return p - q;
}

__global__ void snnl_grad_sums(const float* x, const int32_t* labels, int64_t B, int64_t D,
                               double inv_t, AnchorStats st, double* acc) {
  __shared__ float rows[kTile][kTile + 1], cols[kTile][kTile + 1];
  __shared__ double coef[kTile][kTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t i0 = int64_t(blockIdx.x) * kTile, i = i0 + ty;
  const int32_t yi = i < B ? labels[i] : -1;

  for (int64_t j0 = 0; j0 < B; j0 += kTile) {
    const double d = fmax(tile_distance(x, B, D, i0, j0, rows, cols), 0.0);
    const int64_t j = j0 + tx;
    double c = 0.0;
    if (i < B && j < B && j != i) {
      const bool same = labels[j] == yi;
      c = endpoint_coef(st, i, d, same, inv_t) + endpoint_coef(st, j, d, same, inv_t);
    }
    coef[ty][tx] = c;
    // Race prevented: the tile's coefficients are all written before rows consume them.
    __syncthreads();

    // Σ_k c_ik (x_i − x_k) for features tx, tx + 16, ... of row i; this thread alone owns
    // these accumulator slots, and it adds the tile's columns in order.
    if (i < B) {
      const int64_t jn = min(int64_t(kTile), B - j0);
      for (int64_t f = tx; f < D; f += kTile) {
        const double xi = x[i * D + f];
        double a = j0 == 0 ? 0.0 : acc[i * D + f];
        for (int64_t kk = 0; kk < jn; ++kk)
          a += coef[ty][kk] * (xi - double(x[(j0 + kk) * D + f]));
        acc[i * D + f] = a;
      }
    }
    // Race prevented: coef is rewritten for the next tile only after every row used it.
    __syncthreads();
  }
}

// grad = −2/(T·N)·acc, with N the number of counted anchors (0 → zero gradient, SPEC 2.3).
__global__ void snnl_grad_scale(const double* acc, const double* count, int64_t n,
                                double inv_t, float* grad) {
  const double anchors = count[0];
  const double scale = anchors > 0.0 ? -inv_t / anchors : 0.0;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x)
    grad[e] = static_cast<float>(2.0 * (scale * acc[e]));
}

}  // namespace

size_t snnl_workspace(int64_t B, int64_t D) {
  // Six per-anchor arrays, the anchor count, and the [B,D] gradient accumulator.
  return static_cast<size_t>(6 * B + 1 + B * D) * sizeof(double);
}

void snnl(const float* x, const int32_t* labels, int64_t B, int64_t D, float temperature,
          float* grad_x, float* loss, void* workspace, cudaStream_t stream) {
  require(B >= 0 && D > 0, "snnl", "need B >= 0 and D > 0");
  require(temperature > 0.0f && temperature < INFINITY, "snnl",
          "temperature must be finite and > 0");
  require(loss != nullptr, "snnl", "needs a device float for the loss");
  require(B == 0 || (x && labels && workspace), "snnl",
          "needs x, labels and snnl_workspace() bytes");
  if (B == 0) {
    fill(loss, 1, 0.0f, stream);  // no anchor: loss 0 by definition
    return;
  }
  auto* ws = static_cast<double*>(workspace);
  const AnchorStats st{ws, ws + B, ws + 2 * B, ws + 3 * B, ws + 4 * B, ws + 5 * B};
  double* count = ws + 6 * B;
  double* acc = count + 1;
  const double inv_t = 1.0 / double(temperature);
  const unsigned blocks = static_cast<unsigned>((B + kTile - 1) / kTile);
  const dim3 threads(kTile, kTile);

  // Pass 1, then the mean over counted anchors (which also leaves N in `count`).
  snnl_stats<<<blocks, threads, 0, stream>>>(x, labels, B, D, inv_t, st);
  cuda::check_launch("snnl_stats");
  finish_mean(st.ell, st.valid, B, 1.0, loss, count, stream);
  if (!grad_x) return;

  // Pass 2 reads every anchor's statistics, so it starts after pass 1 (stream order).
  snnl_grad_sums<<<blocks, threads, 0, stream>>>(x, labels, B, D, inv_t, st, acc);
  cuda::check_launch("snnl_grad_sums");
  snnl_grad_scale<<<grid_for(B * D), kThreads, 0, stream>>>(acc, count, B * D, inv_t, grad_x);
  cuda::check_launch("snnl_grad_scale");
}

}  // namespace sigmar::kernels::gpu
