// Elementwise kernels (fill, add, ReLU, bias broadcast), the global average pool, and the two
// small reductions every loss and bias gradient ends with (finish_mean, channel_sum).
//
// Parallelisation: elementwise kernels are grid-stride loops, one thread per element per
// stride. The average pool gives each row of S values to one warp. finish_mean runs as a
// single block (its inputs are per-sample values, a few thousand at most); channel_sum is the
// two-stage segmented sum of common.cuh. Every sum has a fixed order: no atomics.
#include "kernels/common.cuh"
#include "kernels/kernels_cuda.cuh"

namespace sigmar::kernels::gpu {

namespace {

__global__ void fill_kernel(float* dst, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void add_scaled_kernel(const float* a, const float* b, float s, float* out,
                                  int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + s * b[i];
}

// s lives on the device (a loss's incoming gradient): every thread reads the one value.
__global__ void scale_by_kernel(const float* x, const float* s, float* out, int64_t n) {
  const float f = s[0];
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[i] * f;
}

__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// Why test x and not y: the convention is about the input; at x == 0 the slope is 0.
__global__ void relu_backward_kernel(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

// One warp per row of S values: lane-strided partial sums in double, then the butterfly.
__global__ void avgpool_forward_kernel(const float* x, int64_t R, int64_t S, float* y) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= R) return;  // the whole warp leaves together: no block-level sync follows
  double acc = 0.0;
  for (int64_t s = lane; s < S; s += kWarp) acc += x[row * S + s];
  acc = warp_sum(acc);
  if (lane == 0) y[row] = static_cast<float>(acc / double(S));
}

__global__ void avgpool_backward_kernel(const float* dy, int64_t R, int64_t S, float* dx) {
  const int64_t n = R * S;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = static_cast<float>(double(dy[i / S]) / double(S));
}

__global__ void broadcast_rows_kernel(const float* b, int64_t rows, int64_t cols, float* out) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = b[i % cols];
}

// One block: each thread sums a fixed stride of the values, block_sum adds the threads.
__global__ void finish_mean_kernel(const double* values, const double* weights, int64_t n,
                                   double scale, float* out, double* count_out) {
  double sum = 0.0, count = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    sum += values[i];
    if (weights) count += weights[i];
  }
  sum = block_sum(sum);
  if (weights) count = block_sum(count);
  if (threadIdx.x != 0) return;
  if (weights) {
    // An empty set of terms has mean 0 by definition (SPEC 2.3), never 0/0.
    out[0] = count > 0.0 ? static_cast<float>(sum / count) : 0.0f;
    if (count_out) count_out[0] = count;
  } else {
    out[0] = static_cast<float>(sum * scale);
  }
}

// The element of a channel sum is the value itself.
struct PlainValue {
  const float* x;
  __device__ double operator()(int64_t i, int64_t) const { return x[i]; }
};

}  // namespace

cudaError_t kernel_image_status() {
  // Asking for a kernel's attributes fails when no machine code for this device was built.
  cudaFuncAttributes attr;
  const cudaError_t status = cudaFuncGetAttributes(&attr, fill_kernel);
  if (status != cudaSuccess) (void)cudaGetLastError();  // not sticky: clear it for later calls
  return status;
}

void fill(float* dst, int64_t n, float value, cudaStream_t stream) {
  require(n >= 0 && (n == 0 || dst), "fill", "need n >= 0 and a buffer");
  if (n == 0) return;
  fill_kernel<<<grid_for(n), kThreads, 0, stream>>>(dst, n, value);
  cuda::check_launch("fill_kernel");
}

void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream) {
  require(n >= 0 && (n == 0 || (a && b && out)), "add", "need n >= 0 and three buffers");
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, b, out, n);
  cuda::check_launch("add_kernel");
}

void add_inplace(float* dst, const float* src, int64_t n, cudaStream_t stream) {
  // Each element reads and writes only itself, so dst may be an input too.
  add(dst, src, dst, n, stream);
}

void add_scaled(const float* a, const float* b, float s, float* out, int64_t n,
                cudaStream_t stream) {
  require(n >= 0 && (n == 0 || (a && b && out)), "add_scaled", "need n >= 0 and three buffers");
  if (n == 0) return;
  add_scaled_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, b, s, out, n);
  cuda::check_launch("add_scaled_kernel");
}

void scale_by(const float* x, const float* s, float* out, int64_t n, cudaStream_t stream) {
  require(n >= 0 && (n == 0 || (x && s && out)), "scale_by", "need n >= 0 and three buffers");
  if (n == 0) return;
  scale_by_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, s, out, n);
  cuda::check_launch("scale_by_kernel");
}

void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  require(n >= 0 && (n == 0 || (x && y)), "relu_forward", "need n >= 0 and two buffers");
  if (n == 0) return;
  relu_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, y, n);
  cuda::check_launch("relu_forward_kernel");
}

void relu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream) {
  require(n >= 0 && (n == 0 || (x && dy && dx)), "relu_backward",
          "need n >= 0 and three buffers");
  if (n == 0) return;
  relu_backward_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, dy, dx, n);
  cuda::check_launch("relu_backward_kernel");
}

void global_avgpool_forward(const float* x, int64_t R, int64_t S, float* y,
                            cudaStream_t stream) {
  require(R >= 0 && S > 0, "global_avgpool_forward", "need R >= 0 rows of S > 0 values");
  if (R == 0) return;
  const int64_t rows_per_block = kThreads / kWarp;
  const unsigned blocks = static_cast<unsigned>((R + rows_per_block - 1) / rows_per_block);
  avgpool_forward_kernel<<<blocks, kThreads, 0, stream>>>(x, R, S, y);
  cuda::check_launch("avgpool_forward_kernel");
}

void global_avgpool_backward(const float* dy, int64_t R, int64_t S, float* dx,
                             cudaStream_t stream) {
  require(R >= 0 && S > 0, "global_avgpool_backward", "need R >= 0 rows of S > 0 values");
  if (R == 0) return;
  avgpool_backward_kernel<<<grid_for(R * S), kThreads, 0, stream>>>(dy, R, S, dx);
  cuda::check_launch("avgpool_backward_kernel");
}

void broadcast_rows(const float* b, int64_t rows, int64_t cols, float* out,
                    cudaStream_t stream) {
  require(rows >= 0 && cols > 0, "broadcast_rows", "need rows >= 0 and cols > 0");
  if (rows == 0) return;
  broadcast_rows_kernel<<<grid_for(rows * cols), kThreads, 0, stream>>>(b, rows, cols, out);
  cuda::check_launch("broadcast_rows_kernel");
}

size_t channel_sum_workspace(int64_t N, int64_t G, int64_t R) {
  return static_cast<size_t>(G * segment_parts(N, R)) * sizeof(double);
}

void channel_sum(const float* x, int64_t N, int64_t G, int64_t R, float* out, void* workspace,
                 cudaStream_t stream) {
  require(N >= 0 && G > 0 && R > 0, "channel_sum", "need N >= 0, G > 0 and R > 0");
  require(workspace != nullptr, "channel_sum", "needs channel_sum_workspace() bytes");
  if (N == 0) {
    fill(out, G, 0.0f, stream);  // an empty batch contributes nothing
    return;
  }
  segmented_sum(N, G, R, PlainValue{x}, static_cast<double*>(workspace), out, stream,
                "segmented_partials<channel_sum>");
}

void finish_mean(const double* values, const double* weights, int64_t n, double scale,
                 float* out, double* count_out, cudaStream_t stream) {
  require(n >= 0 && out, "finish_mean", "need n >= 0 and an output");
  finish_mean_kernel<<<1, 1024, 0, stream>>>(values, weights, n, scale, out, count_out);
  cuda::check_launch("finish_mean_kernel");
}

}  // namespace sigmar::kernels::gpu
