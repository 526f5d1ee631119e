// σ²R loss (SPEC 2.4), GPU version of kernels/s2r.cpp: per sample, with the pre-update state,
// d = ‖x − c_y‖², z = (d − v_y)/(v_y + ε), s = σ(k·z), w = 2s and the loss term w·d; the
// gradient is (1/B)(w + d·∂w/∂d)(x − c_y) with ∂w/∂d = 2k·s(1 − s)/(v_y + ε) (dropped when
// detached). The state update moves centers and class variances by the center rule.
//
// Parallelisation: one warp per sample for the loss, lanes striding over D; everything per
// sample is in double as in the CPU twin (k·z reaches 1e30 for far outliers of a class with
// v = 0, and the stable sigmoid keeps s(1 − s) an exact 0 there). The update computes all
// distances to the old centers first, then reuses center.cu's grouping and state kernels.
#include "kernels/common.cuh"
#include "kernels/kernels_cuda.cuh"

namespace sigmar::kernels::gpu {

namespace {

__global__ void s2r_rows(const float* x, const int32_t* labels, const float* centers,
                         const float* variances, int64_t B, int64_t D, double k, double eps,
                         bool detached, double inv_b, float* grad_x, double* term) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= B) return;  // whole warps leave; nothing below synchronises the block
  const float* xi = x + row * D;
  const float* c = centers + int64_t(labels[row]) * D;

  // The center error, and how far it lies above the class variance.
  const double d = warp_sq_distance(xi, c, D);
  const double v = variances[labels[row]];
  const double z = (d - v) / (v + eps);

  // The weight w = 2σ(k·z): 1 at the class variance, → 2 for outliers, < 1 near the center.
  double s, s1ms;
  stable_sigmoid_pair(k * z, s, s1ms);
  const double w = 2.0 * s;
  if (lane == 0) term[row] = w * d;

  if (grad_x) {
    // Factor w + d·∂w/∂d; k·s(1 − s) first so a saturated tail stays an exact 0 even when
    // d/(v + ε) is huge.
    double factor = w;
    if (!detached) factor += 2.0 * (k * s1ms) * (d / (v + eps));
    const double f = factor * inv_b;
    for (int64_t j = lane; j < D; j += kWarp)
      grad_x[row * D + j] = static_cast<float>(f * (double(xi[j]) - double(c[j])));
  }
}

// d_i = ‖x_i − c_{y_i}‖² with the centers as they are now (before the update moves them).
__global__ void distance_rows(const float* x, const int32_t* labels, const float* centers,
                              int64_t B, int64_t D, double* dist) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= B) return;
  const double d = warp_sq_distance(x + row * D, centers + int64_t(labels[row]) * D, D);
  if (threadIdx.x % kWarp == 0) dist[row] = d;
}

__global__ void sigmoid_pair_kernel(const float* t, int64_t n, float* s, float* s1ms) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    double a, b;
    stable_sigmoid_pair(double(t[i]), a, b);
    s[i] = static_cast<float>(a);
    s1ms[i] = static_cast<float>(b);
  }
}

unsigned row_blocks(int64_t B) {
  const int64_t rows_per_block = kThreads / kWarp;
  return static_cast<unsigned>((B + rows_per_block - 1) / rows_per_block);
}

}  // namespace

size_t s2r_loss_workspace(int64_t B) { return static_cast<size_t>(B) * sizeof(double); }

void s2r_loss(const float* x, const int32_t* labels, const float* centers,
              const float* variances, int64_t B, int64_t D, S2RParams p, float* grad_x,
              float* loss, void* workspace, cudaStream_t stream) {
  require(B >= 0 && D > 0, "s2r_loss", "need B >= 0 and D > 0");
  require(p.slope > 0.0f && p.eps > 0.0f, "s2r_loss", "slope k and eps must be > 0");
  require(loss != nullptr, "s2r_loss", "needs a device float for the loss");
  require(B == 0 || (x && labels && centers && variances && workspace), "s2r_loss",
          "needs x, labels, centers, variances and s2r_loss_workspace() bytes");
  auto* term = static_cast<double*>(workspace);
  if (B > 0) {
    s2r_rows<<<row_blocks(B), kThreads, 0, stream>>>(x, labels, centers, variances, B, D,
                                                     p.slope, p.eps, p.detached,
                                                     1.0 / double(B), grad_x, term);
    cuda::check_launch("s2r_rows");
  }
  // L = Σ w_i d_i / (2B).
  finish_mean(term, nullptr, B, B > 0 ? 0.5 / double(B) : 0.0, loss, nullptr, stream);
}

size_t s2r_update_workspace(int64_t B, int64_t C) {
  // d [B] doubles first (8-byte aligned), then order [B] and offsets [C+1].
  return static_cast<size_t>(B) * sizeof(double) + static_cast<size_t>(B + C + 1) * 4;
}

void s2r_update(const float* x, const int32_t* labels, float* centers, float* variances,
                int64_t B, int64_t D, int64_t C, float alpha, void* workspace,
                cudaStream_t stream) {
  require(B >= 0 && D > 0 && C > 0, "s2r_update", "need B >= 0, D > 0 and C > 0");
  require(alpha > 0.0f && alpha <= 1.0f, "s2r_update", "alpha must lie in (0, 1]");
  require(B == 0 || (x && labels && centers && variances && workspace), "s2r_update",
          "needs x, labels, centers, variances and s2r_update_workspace() bytes");
  if (B == 0) return;
  auto* dist = static_cast<double*>(workspace);
  auto* order = reinterpret_cast<int32_t*>(dist + B);
  int32_t* offsets = order + B;

  // Stream order carries each step's results to the next: distances to the old centers,
  // then the class groups, then the one kernel that moves centers and variances together.
  distance_rows<<<row_blocks(B), kThreads, 0, stream>>>(x, labels, centers, B, D, dist);
  cuda::check_launch("distance_rows");
  class_segments(labels, B, C, order, offsets, stream);
  class_state_update(x, order, offsets, centers, variances, dist, D, C, alpha, stream);
}

void sigmoid_pair(const float* t, int64_t n, float* s, float* s1ms, cudaStream_t stream) {
  require(n >= 0 && (n == 0 || (t && s && s1ms)), "sigmoid_pair", "need n >= 0 and buffers");
  if (n == 0) return;
  sigmoid_pair_kernel<<<grid_for(n), kThreads, 0, stream>>>(t, n, s, s1ms);
  cuda::check_launch("sigmoid_pair_kernel");
}

}  // namespace sigmar::kernels::gpu
