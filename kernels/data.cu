// Batch assembly on the GPU: gathers rows `indices` of a u8 image set that lives on the device,
// scales the pixels to [0, 1] and normalises each channel with the training split's mean and
// standard deviation (SPEC 4): out[b,c,s] = (images[idx[b],c,s] / 255 − mean[c]) / stddev[c].
//
//
// Parallelisation: one thread per output value in a grid-stride loop; consecutive threads
// read consecutive pixels of one image plane and write consecutive outputs. The per-channel
// statistics travel in the kernel's parameters (at most kMaxImageChannels channels), already
// folded into one scale and shift per channel exactly as the CPU backend folds them, so both
// compute p·scale + shift with the same two float constants.
#include "kernels/common.cuh"
#include "kernels/kernels_cuda.cuh"

namespace sigmar::kernels::gpu {

namespace {

// (p/255 − mean)/stddev = p·scale + shift, scale = 1/(255·stddev), shift = −mean/stddev.
struct ChannelAffine {
  float scale[kMaxImageChannels];
  float shift[kMaxImageChannels];
};

__global__ void gather_normalize_kernel(const uint8_t* images, const int32_t* indices,
                                        int64_t B, int64_t C, int64_t S,
                                        const __grid_constant__ ChannelAffine affine,
                                        float* out) {
  const int64_t plane = C * S, n = B * plane;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n;
       o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = o / plane, rest = o - b * plane;
    const int64_t c = rest / S;
    const uint8_t p = images[int64_t(indices[b]) * plane + rest];
    out[o] = static_cast<float>(p) * affine.scale[c] + affine.shift[c];
  }
}

}  // namespace

void gather_normalize(const uint8_t* images, const int32_t* indices, int64_t B, int64_t N,
                      int64_t C, int64_t S, const ChannelStats& stats, float* out,
                      cudaStream_t stream) {
  require(B >= 0 && N >= 0 && C > 0 && S > 0, "gather_normalize",
          "need B >= 0, N >= 0, C > 0 and S > 0");
  require(C <= kMaxImageChannels && stats.channels == C, "gather_normalize",
          "stats must hold exactly C <= " + std::to_string(kMaxImageChannels) + " channels");
  for (int c = 0; c < C; ++c)
    require(stats.stddev[c] > 0.0f, "gather_normalize", "every stddev must be > 0");
  if (B == 0) return;
  require(N > 0 && images && indices && out, "gather_normalize",
          "needs images, indices and an output");
  ChannelAffine affine{};
  for (int c = 0; c < C; ++c) {
    affine.scale[c] = 1.0f / (255.0f * stats.stddev[c]);
    affine.shift[c] = -stats.mean[c] / stats.stddev[c];
  }
  gather_normalize_kernel<<<grid_for(B * C * S), kThreads, 0, stream>>>(images, indices, B, C,
                                                                        S, affine, out);
  cuda::check_launch("gather_normalize_kernel");
}

}  // namespace sigmar::kernels::gpu
