// Softmax cross-entropy, forward and backward in one kernel (SPEC 2.1), GPU version of
// kernels/softmax_ce.cpp: per row i of logits [B,C], loss_i = (m − z_y) + log Σ_k exp(z_k − m)
// with m the row maximum, and grad_i = (softmax(z_i) − onehot(y_i)) / B.
//
// Parallelisation: one warp per row (8 rows per 256-thread block). The lanes stride across
// the row for the maximum and for the sum of exponentials, combine them with butterflies (so
// every lane holds the same m and sum), then write the gradient with the same stride. The
// per-row losses go to a [B] scratch in double and finish_mean adds them in a fixed order.
#include "kernels/common.cuh"
#include "kernels/kernels_cuda.cuh"

#include <cmath>

namespace sigmar::kernels::gpu {

namespace {

__global__ void softmax_ce_rows(const float* logits, const int32_t* labels, int64_t B,
                                int64_t C, double inv_b, float* grad, double* row_loss) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= B) return;  // whole warps leave; nothing below synchronises the block
  const float* z = logits + row * C;
  float* g = grad ? grad + row * C : nullptr;

  // The maximum first: every exponent becomes ≤ 0, so nothing overflows and the largest
  // term is exactly 1, whatever the scale of the logits (±1e8, −inf).
  float m = -INFINITY;
  for (int64_t k = lane; k < C; k += kWarp) m = fmaxf(m, z[k]);
  m = warp_max(m);

  // A row of all −inf (or holding +inf or NaN) has no softmax: infinite loss, no gradient,
  // exactly as the CPU twin answers.
  if (!isfinite(m)) {
    if (g)
      for (int64_t k = lane; k < C; k += kWarp) g[k] = 0.0f;
    if (lane == 0) row_loss[row] = INFINITY;
    return;
  }

  // Σ exp(z − m) in double, like the CPU twin: the log below is then exact to float.
  double sum = 0.0;
  for (int64_t k = lane; k < C; k += kWarp) sum += exp(double(z[k]) - double(m));
  sum = warp_sum(sum);

  // loss = (m − z_y) + log(sum): the two large terms cancel before anything small is added.
  const int32_t y = labels[row];
  if (lane == 0) row_loss[row] = (double(m) - double(z[y])) + log(sum);

  if (g) {
    // softmax_k / B = exp(z_k − m)·(1/B)/sum; the target also subtracts 1/B.
    const double scale = inv_b / sum;
    for (int64_t k = lane; k < C; k += kWarp) {
      const double e = exp(double(z[k]) - double(m));
      g[k] = k == y ? static_cast<float>((e / sum - 1.0) * inv_b)
                    : static_cast<float>(e * scale);
    }
  }
}

}  // namespace

size_t softmax_ce_workspace(int64_t B, int64_t) {
  return static_cast<size_t>(B) * sizeof(double);  // one loss per row
}

void softmax_ce(const float* logits, const int32_t* labels, int64_t B, int64_t C, float* grad,
                float* loss, void* workspace, cudaStream_t stream) {
  require(B >= 0 && C > 0, "softmax_ce", "need B >= 0 and C > 0");
  require(loss != nullptr, "softmax_ce", "needs a device float for the loss");
  require(B == 0 || (logits && labels && workspace), "softmax_ce",
          "needs logits, labels and softmax_ce_workspace() bytes");
  auto* row_loss = static_cast<double*>(workspace);

  if (B > 0) {
    const int64_t rows_per_block = kThreads / kWarp;
    const unsigned blocks = static_cast<unsigned>((B + rows_per_block - 1) / rows_per_block);
    softmax_ce_rows<<<blocks, kThreads, 0, stream>>>(logits, labels, B, C, 1.0 / double(B),
                                                     grad, row_loss);
    cuda::check_launch("softmax_ce_rows");
  }
  // Mean over the batch; stream order makes every row loss visible to this kernel.
  finish_mean(row_loss, nullptr, B, B > 0 ? 1.0 / double(B) : 0.0, loss, nullptr, stream);
}

}  // namespace sigmar::kernels::gpu
