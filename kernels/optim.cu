// SGD (momentum, Nesterov, L2 weight decay) and Adam / AdamW, GPU versions of
// kernels/optim.cpp, with PyTorch's update order (SPEC 6). Each parameter element is updated
// by the same float formula as on the CPU; the per-step scalars (bias corrections and the
// factors built from them) are formed once on the host in double, exactly as the CPU twin
// forms them, and passed in.
//
// Parallelisation: one thread per element in a grid-stride loop. The multi-tensor variants
// update up to kMaxSlots parameter tensors in one launch: the tensors are cut into chunks of
// kChunk elements, a table in the kernel's parameters says which block owns which chunk of
// which tensor, and each block updates its chunk. Every element is touched by one thread only.
#include "kernels/common.cuh"
#include "kernels/kernels_cuda.cuh"

#include <cmath>

namespace sigmar::kernels::gpu {

namespace {

constexpr int kMaxSlots = 24;
constexpr int64_t kChunk = 8 * kThreads;

struct SgdCoef {
  float lr, momentum, weight_decay;
  bool nesterov;
};

struct AdamCoef {
  float step_size, bc2_sqrt, beta1, beta2, one_m_b1, one_m_b2, eps, shrink, l2;
  bool decoupled;
};

// The per-step scalars of Adam, built as the CPU twin builds them.
AdamCoef adam_coef(int64_t t, float lr, float beta1, float beta2, float eps,
                   float weight_decay, bool decoupled) {
  const double bc1 = 1.0 - std::pow(double(beta1), double(t));
  const double bc2 = 1.0 - std::pow(double(beta2), double(t));
  AdamCoef c;
  c.step_size = float(double(lr) / bc1);
  c.bc2_sqrt = float(std::sqrt(bc2));
  c.beta1 = beta1;
  c.beta2 = beta2;
  c.one_m_b1 = float(1.0 - double(beta1));
  c.one_m_b2 = float(1.0 - double(beta2));
  c.eps = eps;
  // AdamW shrinks the weight before the step; Adam adds the decay to the gradient instead.
  c.shrink = float(1.0 - double(lr) * double(weight_decay));
  c.l2 = decoupled ? 0.0f : weight_decay;
  c.decoupled = decoupled;
  return c;
}

__device__ inline void sgd_element(float* w, const float* g, float* buf, int64_t i,
                                   const SgdCoef& c) {
  // L2 weight decay folds into the gradient first.
  const float d = g[i] + c.weight_decay * w[i];
  float step = d;
  if (c.momentum != 0.0f) {
    // b ← μ·b + g (b = 0 at the start gives PyTorch's first step b = g); Nesterov looks
    // ahead along the new buffer, plain momentum steps along it.
    const float b = c.momentum * buf[i] + d;
    buf[i] = b;
    step = c.nesterov ? d + c.momentum * b : b;
  }
  w[i] = w[i] - c.lr * step;
}

__device__ inline void adam_element(float* w, const float* g, float* m, float* v, int64_t i,
                                    const AdamCoef& c) {
  float wi = w[i];
  const float gi = g[i] + c.l2 * wi;
  if (c.decoupled) wi = wi * c.shrink;
  // First and second moments: exponential moving averages of g and g².
  const float mi = c.beta1 * m[i] + c.one_m_b1 * gi;
  const float vi = c.beta2 * v[i] + c.one_m_b2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  // w ← w − lr·m̂/(√v̂ + ε), with m̂ = m/bc1 (in step_size) and √v̂ = √v/√bc2.
  const float denom = sqrtf(vi) / c.bc2_sqrt + c.eps;
  w[i] = wi - c.step_size * (mi / denom);
}

__global__ void sgd_kernel(float* w, const float* g, float* buf, int64_t n, SgdCoef c) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    sgd_element(w, g, buf, i, c);
}

__global__ void adam_kernel(float* w, const float* g, float* m, float* v, int64_t n,
                            AdamCoef c) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    adam_element(w, g, m, v, i, c);
}

// Which block updates what: block b belongs to the slot s with first_block[s] <= b <
// first_block[s + 1], and updates that tensor's chunk b − first_block[s].
struct SlotTable {
  ParamSlot slot[kMaxSlots];
  int64_t first_block[kMaxSlots + 1];
  int count;
};

__device__ inline int find_slot(const SlotTable& table, int64_t block) {
  int s = 0;
  while (s + 1 < table.count && table.first_block[s + 1] <= block) ++s;
  return s;
}

template <bool kAdam, class Coef>
__global__ void multi_kernel(const __grid_constant__ SlotTable table, Coef c) {
  const int s = find_slot(table, blockIdx.x);
  const ParamSlot& p = table.slot[s];
  const int64_t begin = (blockIdx.x - table.first_block[s]) * kChunk;
  const int64_t end = min(p.n, begin + kChunk);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    if constexpr (kAdam)
      adam_element(p.w, p.g, p.s1, p.s2, i, c);
    else
      sgd_element(p.w, p.g, p.s1, i, c);
  }
}

// Splits `slots` into tables of at most kMaxSlots non-empty tensors and launches each.
template <bool kAdam, class Coef>
void launch_multi(const ParamSlot* slots, int count, const Coef& c, cudaStream_t stream,
                  const char* name) {
  SlotTable table{};
  int64_t blocks = 0;
  auto flush = [&] {
    if (table.count == 0) return;
    table.first_block[table.count] = blocks;
    multi_kernel<kAdam><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(table, c);
    cuda::check_launch(name);
    table = SlotTable{};
    blocks = 0;
  };
  for (int k = 0; k < count; ++k) {
    if (slots[k].n == 0) continue;
    table.slot[table.count] = slots[k];
    table.first_block[table.count] = blocks;
    blocks += (slots[k].n + kChunk - 1) / kChunk;
    if (++table.count == kMaxSlots) flush();
  }
  flush();
}

void check_sgd(float momentum, bool nesterov, const char* what) {
  require(!(nesterov && momentum == 0.0f), what, "Nesterov needs momentum > 0 (as in PyTorch)");
}

}  // namespace

void sgd_step(float* w, const float* g, float* buf, int64_t n, float lr, float momentum,
              float weight_decay, bool nesterov, cudaStream_t stream) {
  require(n >= 0, "sgd_step", "negative size");
  check_sgd(momentum, nesterov, "sgd_step");
  require(momentum == 0.0f || buf != nullptr, "sgd_step", "momentum needs a buffer");
  if (n == 0) return;
  require(w && g, "sgd_step", "needs w and g");
  sgd_kernel<<<grid_for(n), kThreads, 0, stream>>>(w, g, buf, n,
                                                   SgdCoef{lr, momentum, weight_decay, nesterov});
  cuda::check_launch("sgd_kernel");
}

void adam_step(float* w, const float* g, float* m, float* v, int64_t n, int64_t t, float lr,
               float beta1, float beta2, float eps, float weight_decay, bool decoupled,
               cudaStream_t stream) {
  require(n >= 0, "adam_step", "negative size");
  require(t >= 1, "adam_step", "step count t starts at 1");
  if (n == 0) return;
  require(w && g && m && v, "adam_step", "needs w, g, m and v");
  const AdamCoef c = adam_coef(t, lr, beta1, beta2, eps, weight_decay, decoupled);
  adam_kernel<<<grid_for(n), kThreads, 0, stream>>>(w, g, m, v, n, c);
  cuda::check_launch("adam_kernel");
}

void sgd_step_multi(const ParamSlot* slots, int count, float lr, float momentum,
                    float weight_decay, bool nesterov, cudaStream_t stream) {
  require(count >= 0 && (count == 0 || slots), "sgd_step_multi", "bad slot list");
  check_sgd(momentum, nesterov, "sgd_step_multi");
  for (int k = 0; k < count; ++k) {
    const ParamSlot& p = slots[k];
    require(p.n >= 0 && (p.n == 0 || (p.w && p.g && (momentum == 0.0f || p.s1))),
            "sgd_step_multi", "slot " + std::to_string(k) + " lacks w, g or its buffer");
  }
  launch_multi<false>(slots, count, SgdCoef{lr, momentum, weight_decay, nesterov}, stream,
                      "multi_kernel<sgd>");
}

void adam_step_multi(const ParamSlot* slots, int count, int64_t t, float lr, float beta1,
                     float beta2, float eps, float weight_decay, bool decoupled,
                     cudaStream_t stream) {
  require(count >= 0 && (count == 0 || slots), "adam_step_multi", "bad slot list");
  require(t >= 1, "adam_step_multi", "step count t starts at 1");
  for (int k = 0; k < count; ++k) {
    const ParamSlot& p = slots[k];
    require(p.n >= 0 && (p.n == 0 || (p.w && p.g && p.s1 && p.s2)), "adam_step_multi",
            "slot " + std::to_string(k) + " lacks w, g, m or v");
  }
  launch_multi<true>(slots, count, adam_coef(t, lr, beta1, beta2, eps, weight_decay, decoupled),
                     stream, "multi_kernel<adam>");
}

}  // namespace sigmar::kernels::gpu
