// Device-side pieces every kernel file shares (nvcc only; host code includes kernels_cuda.cuh):
// deterministic warp and block reductions, the stable sigmoid, a two-stage segmented sum, and
// the launch-size and precondition helpers the launchers use.
//
// Determinism: every reduction here combines values in an order fixed by the shape alone
// (thread strides, then a butterfly or tree of fixed pattern). No floating-point atomics
// anywhere, and nothing depends on the GPU's SM count, so two runs, or two GPUs of the same
// architecture, give bit-identical sums.
#pragma once

#include "engine/cuda/check.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace sigmar::kernels::gpu {

constexpr int kWarp = 32;
constexpr int kThreads = 256;  // default block size of elementwise and reduction kernels

// ---- host helpers ----------------------------------------------------------------------

// Preconditions of a launcher: a false condition throws naming the launcher and the rule.
inline void require(bool ok, const char* launcher, const std::string& rule) {
  if (!ok) throw std::invalid_argument(std::string(launcher) + ": " + rule);
}

// Blocks for a grid-stride loop over n items: enough to fill any GPU, never more than needed.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t(1) << 20));
}

// ---- warp and block reductions -----------------------------------------------------------

// Butterfly (xor) sum: every lane ends with the same, bit-identical total, because at each
// level the two partners add the same two numbers (IEEE addition commutes exactly).
template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); the result is valid
// in thread 0. Every thread of the block must call it (it synchronises).
__device__ inline double block_sum(double v) {
  __shared__ double warp_totals[32];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  // Race prevented: a previous call's readers of warp_totals must be done before it is
  // overwritten (block_sum may be called more than once per kernel).
  __syncthreads();
  if (lane == 0) warp_totals[warp] = v;
  // Race prevented: warp 0 reads every warp's total only after all of them are written.
  __syncthreads();
  double total = 0.0;
  if (warp == 0) {
    const int warps = blockDim.x / kWarp;
    total = warp_sum(lane < warps ? warp_totals[lane] : 0.0);
  }
  return total;
}

// ‖a − b‖² over D features for the calling warp, in double (squares of float differences,
// summed without cancellation); every lane receives the total.
__device__ inline double warp_sq_distance(const float* a, const float* b, int64_t D) {
  const int lane = threadIdx.x % kWarp;
  double acc = 0.0;
  for (int64_t k = lane; k < D; k += kWarp) {
    const double diff = double(a[k]) - double(b[k]);
    acc += diff * diff;
  }
  return warp_sum(acc);
}

// ---- the logistic function -----------------------------------------------------------------

// sigmoid(t) and sigmoid(t)·(1 − sigmoid(t)) from one exp(−|t|) ∈ [0, 1]: nothing overflows
// for any t, ±inf included, and the slope is e/(1+e)², never the rounded-off 1 − s.
__device__ inline void stable_sigmoid_pair(double t, double& s, double& s1ms) {
  const double e = exp(-fabs(t));
  const double r = 1.0 / (1.0 + e);
  s = t >= 0.0 ? r : e * r;
  s1ms = e * r * r;
}

// ---- two-stage segmented sum -------------------------------------------------------------
// A tensor viewed as [N, G, R] is summed over N and R for each g (a bias gradient, a PReLU
// slope gradient). Stage 1: block (g, p) sums a contiguous chunk of the N·R elements of
// segment g in double and writes partials[g·P + p]. Stage 2: one warp per g adds its P
// partials in order. P depends only on the shape, so the grouping, hence the bits, do too.

// How many partial blocks each segment gets.
inline int64_t segment_parts(int64_t N, int64_t R) {
  const int64_t m = N * R;
  return std::clamp<int64_t>((m + 8191) / 8192, 1, 128);
}

// Op: __device__ double operator()(int64_t flat_index, int64_t g) const, the element's
// contribution to segment g (it may also write an elementwise output for that index).
template <class Op>
__global__ void segmented_partials(int64_t N, int64_t G, int64_t R, int64_t parts, Op op,
                                   double* partials) {
  const int64_t g = blockIdx.x, p = blockIdx.y;
  const int64_t m = N * R;
  const int64_t chunk = (m + parts - 1) / parts;
  const int64_t begin = p * chunk, end = min(m, begin + chunk);

  // Each thread walks its stride of the chunk in order; the block then adds the threads.
  double acc = 0.0;
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t n = e / R, r = e - n * R;
    acc += op((n * G + g) * R + r, g);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[g * parts + p] = acc;
}

// Stage 2: out[g] = Σ_p partials[g·P + p], one warp per segment. (A template only so that
// every file including this header may instantiate it without a duplicate symbol.)
template <typename T = double>
__global__ void sum_partials(const T* partials, int64_t G, int64_t parts,
                                    float* out) {
  const int64_t g = blockIdx.x;
  T acc = 0.0;
  for (int64_t p = threadIdx.x; p < parts; p += kWarp) acc += partials[g * parts + p];
  acc = warp_sum(acc);
  if (threadIdx.x == 0) out[g] = static_cast<float>(acc);
}

// Launches both stages; `partials` holds G·segment_parts(N, R) doubles.
template <class Op>
void segmented_sum(int64_t N, int64_t G, int64_t R, Op op, double* partials, float* out,
                   cudaStream_t stream, const char* name) {
  const int64_t parts = segment_parts(N, R);
  segmented_partials<<<dim3(static_cast<unsigned>(G), static_cast<unsigned>(parts)), kThreads,
                       0, stream>>>(N, G, R, parts, op, partials);
  ::sigmar::cuda::check_launch(name);
  sum_partials<double><<<static_cast<unsigned>(G), kWarp, 0, stream>>>(partials, G, parts, out);
  ::sigmar::cuda::check_launch("sum_partials");
}

}  // namespace sigmar::kernels::gpu
