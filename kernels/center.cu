// Center loss (Wen et al. 2016; SPEC 2.2), GPU version of kernels/center.cpp: the loss with
// its gradient, and the paper's update of the class centers. Also the two building blocks
// that σ²R's state update shares: grouping samples by class, and moving each class's state.
//
// Parallelisation:
// - loss: one warp per sample; lanes stride over the D features, a butterfly adds them.
// - grouping: one block builds a stable counting sort of the sample indices by label. Counts
//   use integer atomics (an integer total does not depend on the order of the adds); each
//   sample's rank inside its class is the number of earlier samples with its label, so the
//   groups keep batch order without any ordering from the hardware.
// - update: block (j, chunk) owns class j and 128 features; each thread walks class j's group
//   in batch order and sums its feature in double. No two threads write the same value, and
//   a class absent from the batch is never written (its center stays bit-for-bit).
#include "kernels/common.cuh"
#include "kernels/kernels_cuda.cuh"

namespace sigmar::kernels::gpu {

namespace {

constexpr int kSortThreads = 1024;
constexpr int kUpdateThreads = 128;

__global__ void center_loss_rows(const float* x, const int32_t* labels, const float* centers,
                                 int64_t B, int64_t D, double inv_b, float* grad_x,
                                 double* dist) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= B) return;  // whole warps leave; nothing below synchronises the block
  const float* xi = x + row * D;
  const float* c = centers + int64_t(labels[row]) * D;

  // ‖x_i − c‖², in double.
  const double d = warp_sq_distance(xi, c, D);
  if (lane == 0) dist[row] = d;

  // ∂L/∂x_i = (x_i − c_{y_i}) / B.
  if (grad_x)
    for (int64_t k = lane; k < D; k += kWarp)
      grad_x[row * D + k] = static_cast<float>((double(xi[k]) - double(c[k])) * inv_b);
}

// One block of kSortThreads: offsets [C+1] and order [B] as described in kernels_cuda.cuh.
__global__ void class_segments_kernel(const int32_t* labels, int64_t B, int64_t C,
                                      int32_t* order, int32_t* offsets) {
  __shared__ int32_t scan[kSortThreads];
  const int tid = threadIdx.x;

  // 1. Zero the per-class counts (offsets[c + 1] counts class c).
  for (int64_t c = tid; c <= C; c += blockDim.x) offsets[c] = 0;
  // Race prevented: no thread may add to a count before it has been zeroed.
  __syncthreads();

  // 2. Count each class.
  for (int64_t i = tid; i < B; i += blockDim.x) atomicAdd(&offsets[labels[i] + 1], 1);
  // Race prevented: the scan reads each count only after every sample has been counted.
  __syncthreads();

  // 3. Inclusive scan of the counts, blockDim.x classes at a time, carrying the running total.
  int32_t carry = 0;
  for (int64_t base = 0; base < C; base += blockDim.x) {
    const int64_t c = base + tid;
    scan[tid] = c < C ? offsets[c + 1] : 0;
    // Race prevented: every slot of this chunk is loaded before any thread reads a neighbour.
    __syncthreads();
    for (int step = 1; step < int(blockDim.x); step <<= 1) {
      const int32_t add = tid >= step ? scan[tid - step] : 0;
      // Race prevented: all reads of this step finish before any slot is overwritten.
      __syncthreads();
      scan[tid] += add;
      // Race prevented: the next step reads values this step has finished writing.
      __syncthreads();
    }
    if (c < C) offsets[c + 1] = scan[tid] + carry;
    carry += scan[blockDim.x - 1];
    // Race prevented: everyone has read scan[last] before the next chunk overwrites it.
    __syncthreads();
  }

  // 4. Place each sample after the earlier samples of its class (batch order kept).
  for (int64_t i = tid; i < B; i += blockDim.x) {
    const int32_t y = labels[i];
    int32_t rank = 0;
    for (int64_t j = 0; j < i; ++j) rank += labels[j] == y;
    order[offsets[y] + rank] = static_cast<int32_t>(i);
  }
}

__global__ void class_state_kernel(const float* x, const int32_t* order,
                                   const int32_t* offsets, float* centers, float* variances,
                                   const double* d, int64_t D, double alpha) {
  const int64_t j = blockIdx.x;
  const int32_t begin = offsets[j], end = offsets[j + 1];
  const int32_t n = end - begin;
  // An absent class keeps its state bit-for-bit: not even rewritten with itself.
  if (n == 0) return;
  const double denom = 1.0 + double(n);

  // Δc = Σ (c − x_i)/(1 + n) = (n·c − Σ x_i)/(1 + n), summed in batch order; c ← c − α·Δc.
  const int64_t k = blockIdx.y * int64_t(blockDim.x) + threadIdx.x;
  if (k < D) {
    const double c = centers[j * D + k];
    double sum = 0.0;
    for (int32_t t = begin; t < end; ++t) sum += double(x[int64_t(order[t]) * D + k]);
    const double delta = (double(n) * c - sum) / denom;
    centers[j * D + k] = static_cast<float>(c - alpha * delta);
  }

  // The class variance moves by the same rule towards the samples' distances (σ²R); d was
  // computed from the old centers by an earlier kernel, so this block's writes cannot affect it.
  if (variances && blockIdx.y == 0 && threadIdx.x == 0) {
    const double v = variances[j];
    double sum_d = 0.0;
    for (int32_t t = begin; t < end; ++t) sum_d += d[order[t]];
    const double delta = (double(n) * v - sum_d) / denom;
    variances[j] = static_cast<float>(v - alpha * delta);
  }
}

}  // namespace

size_t center_loss_workspace(int64_t B) { return static_cast<size_t>(B) * sizeof(double); }

void center_loss(const float* x, const int32_t* labels, const float* centers, int64_t B,
                 int64_t D, float* grad_x, float* loss, void* workspace, cudaStream_t stream) {
  require(B >= 0 && D > 0, "center_loss", "need B >= 0 and D > 0");
  require(loss != nullptr, "center_loss", "needs a device float for the loss");
  require(B == 0 || (x && labels && centers && workspace), "center_loss",
          "needs x, labels, centers and center_loss_workspace() bytes");
  auto* dist = static_cast<double*>(workspace);
  if (B > 0) {
    const int64_t rows_per_block = kThreads / kWarp;
    const unsigned blocks = static_cast<unsigned>((B + rows_per_block - 1) / rows_per_block);
    center_loss_rows<<<blocks, kThreads, 0, stream>>>(x, labels, centers, B, D,
                                                      1.0 / double(B), grad_x, dist);
    cuda::check_launch("center_loss_rows");
  }
  // L_C = Σ d_i / (2B).
  finish_mean(dist, nullptr, B, B > 0 ? 0.5 / double(B) : 0.0, loss, nullptr, stream);
}

void class_segments(const int32_t* labels, int64_t B, int64_t C, int32_t* order,
                    int32_t* offsets, cudaStream_t stream) {
  require(B >= 0 && C > 0, "class_segments", "need B >= 0 and C > 0");
  require(B < (int64_t(1) << 31), "class_segments", "batch too large for int32 indices");
  class_segments_kernel<<<1, kSortThreads, 0, stream>>>(labels, B, C, order, offsets);
  cuda::check_launch("class_segments_kernel");
}

void class_state_update(const float* x, const int32_t* order, const int32_t* offsets,
                        float* centers, float* variances, const double* d, int64_t D,
                        int64_t C, float alpha, cudaStream_t stream) {
  require(D > 0 && C > 0, "class_state_update", "need D > 0 and C > 0");
  require(!variances || d, "class_state_update", "a variance update needs the distances d");
  const dim3 grid(static_cast<unsigned>(C),
                  static_cast<unsigned>((D + kUpdateThreads - 1) / kUpdateThreads));
  class_state_kernel<<<grid, kUpdateThreads, 0, stream>>>(x, order, offsets, centers,
                                                          variances, d, D, double(alpha));
  cuda::check_launch("class_state_kernel");
}

size_t center_update_workspace(int64_t B, int64_t C) {
  return static_cast<size_t>(B + C + 1) * sizeof(int32_t);  // order [B], offsets [C+1]
}

void center_update(const float* x, const int32_t* labels, float* centers, int64_t B, int64_t D,
                   int64_t C, float alpha, void* workspace, cudaStream_t stream) {
  require(B >= 0 && D > 0 && C > 0, "center_update", "need B >= 0, D > 0 and C > 0");
  require(alpha > 0.0f && alpha <= 1.0f, "center_update", "alpha must lie in (0, 1]");
  require(B == 0 || (x && labels && centers && workspace), "center_update",
          "needs x, labels, centers and center_update_workspace() bytes");
  if (B == 0) return;  // no sample, no class present: nothing moves
  auto* order = static_cast<int32_t*>(workspace);
  int32_t* offsets = order + B;
  class_segments(labels, B, C, order, offsets, stream);
  // Stream order: the update starts after the grouping kernel has finished writing.
  class_state_update(x, order, offsets, centers, nullptr, nullptr, D, C, alpha, stream);
}

}  // namespace sigmar::kernels::gpu
