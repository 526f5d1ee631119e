// PReLU, GPU version of kernels/prelu.cpp: y = x for x > 0, a·x otherwise, with one slope per
// channel or one shared by all; backward writes dx = dy (x > 0) or a·dy, and the slope gradient
// da_g = Σ_{x ≤ 0} x·dy over everything slope g touches (x == 0 adds 0 either way, SPEC 1).
//
// Parallelisation: forward and dx are elementwise grid-stride loops. The slope gradient is the
// two-stage segmented sum of common.cuh, with the input viewed as [N, G, R]: G = Ch slopes over
// runs of R = S values, or G = 1 slope over R = Ch·S. Stage 1 writes dx as it reads each
// element, so one pass over x and dy serves both outputs; stage 2 adds the partials in order.
#include "kernels/common.cuh"
#include "kernels/kernels_cuda.cuh"

namespace sigmar::kernels::gpu {

namespace {

__global__ void prelu_forward_kernel(const float* x, const float* a, int64_t n, int64_t Ch,
                                     int64_t S, bool shared_slope, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float slope = a[shared_slope ? 0 : (i / S) % Ch];
    y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
  }
}

// dx alone, for callers that do not want the slope gradient.
__global__ void prelu_dx_kernel(const float* x, const float* a, const float* dy, int64_t n,
                                int64_t Ch, int64_t S, bool shared_slope, float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float slope = a[shared_slope ? 0 : (i / S) % Ch];
    dx[i] = x[i] > 0.0f ? dy[i] : slope * dy[i];
  }
}

// One element of the backward pass: writes dx, returns its share of da_g.
struct PreluGrad {
  const float* x;
  const float* a;
  const float* dy;
  float* dx;
  __device__ double operator()(int64_t i, int64_t g) const {
    const float xv = x[i], gv = dy[i];
    if (dx) dx[i] = xv > 0.0f ? gv : a[g] * gv;
    return xv > 0.0f ? 0.0 : double(xv) * double(gv);
  }
};

void check_shape(int64_t N, int64_t Ch, int64_t S, int64_t num_slopes, const char* what) {
  require(N >= 0 && Ch > 0 && S > 0, what, "need N >= 0, Ch > 0 and S > 0");
  require(num_slopes == 1 || num_slopes == Ch, what,
          "num_slopes must be 1 or Ch (" + std::to_string(Ch) + "), got " +
              std::to_string(num_slopes));
}

}  // namespace

void prelu_forward(const float* x, const float* a, int64_t N, int64_t Ch, int64_t S,
                   int64_t num_slopes, float* y, cudaStream_t stream) {
  check_shape(N, Ch, S, num_slopes, "prelu_forward");
  const int64_t n = N * Ch * S;
  if (n == 0) return;
  require(x && a && y, "prelu_forward", "needs x, a and y");
  prelu_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, a, n, Ch, S, num_slopes == 1,
                                                             y);
  cuda::check_launch("prelu_forward_kernel");
}

size_t prelu_backward_workspace(int64_t N, int64_t Ch, int64_t S, int64_t num_slopes) {
  const int64_t R = num_slopes == 1 ? Ch * S : S;
  return static_cast<size_t>(num_slopes * segment_parts(N, R)) * sizeof(double);
}

void prelu_backward(const float* x, const float* a, const float* dy, int64_t N, int64_t Ch,
                    int64_t S, int64_t num_slopes, float* dx, float* da, void* workspace,
                    cudaStream_t stream) {
  check_shape(N, Ch, S, num_slopes, "prelu_backward");
  const int64_t n = N * Ch * S;
  if (da && n == 0) {
    fill(da, num_slopes, 0.0f, stream);  // nothing touched the slopes
    return;
  }
  if (n == 0) return;
  require(x && a && dy, "prelu_backward", "needs x, a and dy");

  if (!da) {
    if (dx) {
      prelu_dx_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, a, dy, n, Ch, S,
                                                            num_slopes == 1, dx);
      cuda::check_launch("prelu_dx_kernel");
    }
    return;
  }
  require(workspace != nullptr, "prelu_backward", "needs prelu_backward_workspace() bytes");
  const int64_t R = num_slopes == 1 ? Ch * S : S;
  segmented_sum(N, num_slopes, R, PreluGrad{x, a, dy, dx}, static_cast<double*>(workspace), da,
                stream, "segmented_partials<prelu_backward>");
}

}  // namespace sigmar::kernels::gpu
