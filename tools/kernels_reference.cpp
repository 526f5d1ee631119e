// References for sigmar-kernels (kernels_reference.hpp): the generic ops on the CPU (OpenMP
// loops, oneDNN sgemm) and, in a CUDA build, on the GPU (tools/kernels_gpu.cu, cuBLAS); each
// fused kernel's math as a chain of those ops; and the libraries called directly.
//
// The chains are labelled for what they are: the unfused path of an autograd framework. Every
// op is one full pass over its operands and a fresh tensor for its result, intermediates are
// kept, and the backward is written out op by op as such a framework would run it. Sums use
// double accumulators so that the chains are accurate references, not straw men.
#include "tools/kernels_reference.hpp"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <oneapi/dnnl/dnnl.hpp>
#include <stdexcept>

#ifdef SIGMAR_CUDA
#include "engine/cuda/cuda_backend.hpp"
#include "tools/kernels_gpu.hpp"
#endif

namespace sigmar::lab {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // below this a parallel region costs more than it saves
constexpr float kInf = std::numeric_limits<float>::infinity();

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

// ---- shapes shared by both devices -------------------------------------------------------------

struct Rows {
  int64_t R, K;
};
Rows rows_of(const Tensor& a) {
  const int64_t R = a.ndim() == 0 ? 1 : a.dim(0);
  return {R, R == 0 ? 0 : a.numel() / R};
}

// How b lines up with a (see GenericOps): 0 same shape, 1 scalar, 2 per row, 3 per column.
enum Bcast : int { kFull = 0, kScalar = 1, kRow = 2, kCol = 3 };
Bcast broadcast(const Tensor& a, const Tensor& b, const char* op) {
  if (b.shape() == a.shape()) return kFull;
  if (b.numel() == 1) return kScalar;
  const Rows r = rows_of(a);
  if (b.numel() == r.R && (b.ndim() == 1 || (b.ndim() == 2 && b.dim(1) == 1))) return kRow;
  if (b.ndim() == 2 && b.dim(0) == 1 && b.dim(1) == r.K) return kCol;
  bad(std::string("generic op ") + op + ": cannot broadcast " + shape_str(b.shape()) + " to " +
      shape_str(a.shape()));
}

Tensor first_defined(const TensorMap& in) {
  for (const auto& [n, t] : in)
    if (t.defined()) return t;
  bad("reference: no inputs");
}

// ---- the CPU generic ops -----------------------------------------------------------------------

template <typename F>
Tensor map1(const Tensor& a, F f) {
  Tensor y = Tensor::empty(a.shape());
  const float* ap = a.data();
  float* yp = y.data();
  const int64_t n = a.numel();
#pragma omp parallel for simd if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) yp[i] = f(ap[i]);
  return y;
}

template <typename F>
Tensor map2(const Tensor& a, const Tensor& b, F f, const char* op) {
  const Bcast m = broadcast(a, b, op);
  const Rows r = rows_of(a);
  Tensor y = Tensor::empty(a.shape());
  const float *ap = a.data(), *bp = b.data();
  float* yp = y.data();
  const int64_t n = a.numel(), K = r.K;
  if (m == kFull) {
#pragma omp parallel for simd if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) yp[i] = f(ap[i], bp[i]);
  } else if (m == kScalar) {
    const float s = bp[0];
#pragma omp parallel for simd if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) yp[i] = f(ap[i], s);
  } else {
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t row = 0; row < r.R; ++row) {
      const float* ar = ap + row * K;
      float* yr = yp + row * K;
      if (m == kRow) {
        const float s = bp[row];
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) yr[k] = f(ar[k], s);
      } else {
#pragma omp simd
        for (int64_t k = 0; k < K; ++k) yr[k] = f(ar[k], bp[k]);
      }
    }
  }
  return y;
}

void check_index(const Tensor& index, int64_t limit, const char* op) {
  const int32_t* ip = index.data_i32();
  for (int64_t i = 0; i < index.numel(); ++i)
    if (ip[i] < 0 || ip[i] >= limit)
      bad(std::string("generic op ") + op + ": index " + std::to_string(ip[i]) + " outside [0, " +
          std::to_string(limit) + ")");
}

class CpuOps final : public GenericOps {
 public:
  Device device() const override { return Device::cpu; }

  Tensor unary(Unary op, const Tensor& a, float s) override {
    switch (op) {
      case Unary::exp:
        return map1(a, [](float x) { return std::exp(x); });
      case Unary::log:
        return map1(a, [](float x) { return std::log(x); });
      case Unary::sqrt:
        return map1(a, [](float x) { return std::sqrt(x); });
      case Unary::sigmoid:
        // The two-branch stable form a framework uses: exp of −|x| only.
        return map1(a, [](float x) {
          const float e = std::exp(-std::fabs(x));
          return x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
        });
      case Unary::scale:
        return map1(a, [s](float x) { return x * s; });
      case Unary::shift:
        return map1(a, [s](float x) { return x + s; });
      case Unary::clamp_min:
        return map1(a, [s](float x) { return std::max(x, s); });
      case Unary::clamp_max:
        return map1(a, [s](float x) { return std::min(x, s); });
      case Unary::greater:
        return map1(a, [s](float x) { return x > s ? 1.0f : 0.0f; });
    }
    bad("generic op: unknown unary op");
  }

  Tensor binary(Binary op, const Tensor& a, const Tensor& b) override {
    switch (op) {
      case Binary::add:
        return map2(
            a, b, [](float x, float y) { return x + y; }, "add");
      case Binary::sub:
        return map2(
            a, b, [](float x, float y) { return x - y; }, "sub");
      case Binary::mul:
        return map2(
            a, b, [](float x, float y) { return x * y; }, "mul");
      case Binary::div:
        return map2(
            a, b, [](float x, float y) { return x / y; }, "div");
    }
    bad("generic op: unknown binary op");
  }

  Tensor masked_fill(const Tensor& a, const Tensor& keep, float v) override {
    return map2(
        a, keep, [v](float x, float k) { return k != 0.0f ? x : v; }, "masked_fill");
  }

  Tensor reduce_rows(Reduce op, const Tensor& a) override {
    const Rows r = rows_of(a);
    Tensor y = Tensor::empty({r.R, 1});
    const float* ap = a.data();
    float* yp = y.data();
#pragma omp parallel for if (a.numel() > kParallelMin)
    for (int64_t row = 0; row < r.R; ++row) {
      const float* ar = ap + row * r.K;
      if (op == Reduce::sum) {
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < r.K; ++k) acc += ar[k];
        yp[row] = float(acc);
      } else {
        float m = -kInf;
        for (int64_t k = 0; k < r.K; ++k) m = std::max(m, ar[k]);
        yp[row] = m;
      }
    }
    return y;
  }

  Tensor sum_all(const Tensor& a) override {
    const float* ap = a.data();
    const int64_t n = a.numel();
    double acc = 0;
#pragma omp parallel for simd reduction(+ : acc) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) acc += ap[i];
    return Tensor::from({float(acc)}, {1});
  }

  Tensor gather_rows(const Tensor& table, const Tensor& index) override {
    const Rows t = rows_of(table);
    check_index(index, t.R, "gather_rows");
    const int64_t B = index.numel();
    Tensor y = Tensor::empty({B, t.K});
    const int32_t* ip = index.data_i32();
#pragma omp parallel for if (B * t.K > kParallelMin)
    for (int64_t i = 0; i < B; ++i)
      std::memcpy(y.data() + i * t.K, table.data() + ip[i] * t.K, t.K * sizeof(float));
    return y;
  }

  Tensor pick(const Tensor& a, const Tensor& index) override {
    const Rows r = rows_of(a);
    check_index(index, r.K, "pick");
    Tensor y = Tensor::empty({r.R, 1});
    const int32_t* ip = index.data_i32();
    for (int64_t i = 0; i < r.R; ++i) y.data()[i] = a.data()[i * r.K + ip[i]];
    return y;
  }

  Tensor index_add_rows(const Tensor& src, const Tensor& index, int64_t rows) override {
    const Rows s = rows_of(src);
    check_index(index, rows, "index_add_rows");
    Tensor y = Tensor::zeros({rows, s.K});
    const int32_t* ip = index.data_i32();
    const float* sp = src.data();
    float* yp = y.data();
    // Threads split the columns, so no two write the same cell; rows add in batch order.
#pragma omp parallel if (src.numel() > kParallelMin)
    {
      const int nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t k0 = s.K * t / nt, k1 = s.K * (t + 1) / nt;
      for (int64_t i = 0; i < s.R; ++i)
        for (int64_t k = k0; k < k1; ++k) yp[ip[i] * s.K + k] += sp[i * s.K + k];
    }
    return y;
  }

  Tensor one_hot(const Tensor& index, int64_t classes) override {
    check_index(index, classes, "one_hot");
    const int64_t B = index.numel();
    Tensor y = Tensor::zeros({B, classes});
    for (int64_t i = 0; i < B; ++i) y.data()[i * classes + index.data_i32()[i]] = 1.0f;
    return y;
  }

  Tensor same_label(const Tensor& index) override {
    const int64_t B = index.numel();
    Tensor y = Tensor::empty({B, B});
    const int32_t* ip = index.data_i32();
    float* yp = y.data();
#pragma omp parallel for if (B * B > kParallelMin)
    for (int64_t i = 0; i < B; ++i)
      for (int64_t j = 0; j < B; ++j) yp[i * B + j] = ip[i] == ip[j] ? 1.0f : 0.0f;
    return y;
  }

  Tensor eye(int64_t n) override {
    Tensor y = Tensor::zeros({n, n});
    for (int64_t i = 0; i < n; ++i) y.data()[i * n + i] = 1.0f;
    return y;
  }

  Tensor transpose(const Tensor& a) override {
    const Rows r = rows_of(a);
    Tensor y = Tensor::empty({r.K, r.R});
    const float* ap = a.data();
    float* yp = y.data();
    constexpr int64_t T = 32;  // tiles keep both sides in cache
#pragma omp parallel for collapse(2) if (a.numel() > kParallelMin)
    for (int64_t i0 = 0; i0 < r.R; i0 += T)
      for (int64_t k0 = 0; k0 < r.K; k0 += T)
        for (int64_t i = i0; i < std::min(r.R, i0 + T); ++i)
          for (int64_t k = k0; k < std::min(r.K, k0 + T); ++k) yp[k * r.R + i] = ap[i * r.K + k];
    return y;
  }

  Tensor matmul(const Tensor& a, bool ta, const Tensor& b, bool tb) override {
    const Rows ra = rows_of(a), rb = rows_of(b);
    const int64_t M = ta ? ra.K : ra.R, K = ta ? ra.R : ra.K;
    const int64_t N = tb ? rb.R : rb.K, Kb = tb ? rb.K : rb.R;
    if (K != Kb)
      bad("generic op matmul: inner dims " + std::to_string(K) + " and " + std::to_string(Kb) +
          " differ");
    Tensor y = Tensor::empty({M, N});
    sgemm(ta, tb, M, N, K, a.data(), ra.K, b.data(), rb.K, 0.0f, y.data(), N);
    return y;
  }

  // C[M,N] = op(A)·op(B) + beta·C, row-major, by oneDNN.
  static void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    const dnnl_status_t st =
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    if (st != dnnl_success) bad("oneDNN sgemm failed with status " + std::to_string(st));
  }
};

#ifdef SIGMAR_CUDA
// ---- the GPU generic ops: the same ops as single-purpose kernels (tools/kernels_gpu.cu) --------
static_assert(int(Unary::greater) == 8 && int(Binary::div) == 3 && int(Reduce::max) == 1,
              "kernels_gpu.cu numbers the ops in the order of kernels_reference.hpp");

class GpuOps final : public GenericOps {
 public:
  Device device() const override { return Device::cuda; }

  Tensor unary(Unary op, const Tensor& a, float s) override {
    Tensor y = like(a);
    gpu::unary(int(op), a.data(), s, y.data(), a.numel(), cuda::stream());
    return y;
  }
  Tensor binary(Binary op, const Tensor& a, const Tensor& b) override {
    return two(int(op), a, b, 0.0f, "binary");
  }
  Tensor masked_fill(const Tensor& a, const Tensor& keep, float v) override {
    return two(gpu::kMaskedFill, a, keep, v, "masked_fill");
  }
  Tensor reduce_rows(Reduce op, const Tensor& a) override {
    const Rows r = rows_of(a);
    Tensor y = Tensor::empty({r.R, 1}, Device::cuda);
    gpu::reduce_rows(int(op), a.data(), y.data(), r.R, r.K, cuda::stream());
    return y;
  }
  Tensor sum_all(const Tensor& a) override {
    Tensor y = Tensor::empty({1}, Device::cuda);
    Tensor scratch = Tensor::empty({gpu::sum_all_scratch(a.numel())}, Device::cuda);
    gpu::sum_all(a.data(), a.numel(), scratch.data(), y.data(), cuda::stream());
    return y;
  }
  Tensor gather_rows(const Tensor& table, const Tensor& index) override {
    const Rows t = rows_of(table);
    Tensor y = Tensor::empty({index.numel(), t.K}, Device::cuda);
    gpu::gather_rows(table.data(), index.data_i32(), y.data(), index.numel(), t.K, cuda::stream());
    return y;
  }
  Tensor pick(const Tensor& a, const Tensor& index) override {
    const Rows r = rows_of(a);
    Tensor y = Tensor::empty({r.R, 1}, Device::cuda);
    gpu::pick(a.data(), index.data_i32(), y.data(), r.R, r.K, cuda::stream());
    return y;
  }
  Tensor index_add_rows(const Tensor& src, const Tensor& index, int64_t rows) override {
    const Rows s = rows_of(src);
    Tensor y = Tensor::zeros({rows, s.K}, Device::cuda);
    gpu::index_add_rows(src.data(), index.data_i32(), y.data(), s.R, s.K, cuda::stream());
    return y;
  }
  Tensor one_hot(const Tensor& index, int64_t classes) override {
    Tensor y = Tensor::empty({index.numel(), classes}, Device::cuda);
    gpu::one_hot(index.data_i32(), y.data(), index.numel(), classes, cuda::stream());
    return y;
  }
  Tensor same_label(const Tensor& index) override {
    const int64_t B = index.numel();
    Tensor y = Tensor::empty({B, B}, Device::cuda);
    gpu::same_label(index.data_i32(), y.data(), B, cuda::stream());
    return y;
  }
  Tensor eye(int64_t n) override {
    Tensor y = Tensor::empty({n, n}, Device::cuda);
    gpu::eye(y.data(), n, cuda::stream());
    return y;
  }
  Tensor transpose(const Tensor& a) override {
    const Rows r = rows_of(a);
    Tensor y = Tensor::empty({r.K, r.R}, Device::cuda);
    gpu::transpose(a.data(), y.data(), r.R, r.K, cuda::stream());
    return y;
  }
  Tensor matmul(const Tensor& a, bool ta, const Tensor& b, bool tb) override {
    const Rows ra = rows_of(a), rb = rows_of(b);
    const int64_t M = ta ? ra.K : ra.R, K = ta ? ra.R : ra.K;
    const int64_t N = tb ? rb.R : rb.K;
    if (K != (tb ? rb.K : rb.R)) bad("generic op matmul: inner dims differ");
    Tensor y = Tensor::empty({M, N}, Device::cuda);
    gpu::gemm(ta, tb, M, N, K, a.data(), ra.K, b.data(), rb.K, 0.0f, y.data(), N, cuda::stream());
    return y;
  }

 private:
  static Tensor like(const Tensor& a) { return Tensor::empty(a.shape(), Device::cuda); }
  Tensor two(int op, const Tensor& a, const Tensor& b, float v, const char* name) {
    const Bcast m = broadcast(a, b, name);
    const Rows r = rows_of(a);
    Tensor y = like(a);
    gpu::binary(op, int(m), a.data(), b.data(), v, y.data(), r.R, r.K, cuda::stream());
    return y;
  }
};
#endif

}  // namespace

GenericOps& generic_ops(Device device) {
  if (device == Device::cpu) {
    static CpuOps cpu;
    return cpu;
  }
#ifdef SIGMAR_CUDA
  static GpuOps gpu_ops;
  return gpu_ops;
#else
  throw std::runtime_error("generic ops on cuda: this sigmar was built without CUDA");
#endif
}

// ---- the chains --------------------------------------------------------------------------------
// Short names so that each chain reads like the framework code it stands for.
namespace {
struct Chain {
  GenericOps& g;
  Tensor add(const Tensor& a, const Tensor& b) { return g.binary(Binary::add, a, b); }
  Tensor sub(const Tensor& a, const Tensor& b) { return g.binary(Binary::sub, a, b); }
  Tensor mul(const Tensor& a, const Tensor& b) { return g.binary(Binary::mul, a, b); }
  Tensor div(const Tensor& a, const Tensor& b) { return g.binary(Binary::div, a, b); }
  Tensor scale(const Tensor& a, double s) { return g.unary(Unary::scale, a, float(s)); }
  Tensor shift(const Tensor& a, double s) { return g.unary(Unary::shift, a, float(s)); }
  Tensor exp(const Tensor& a) { return g.unary(Unary::exp, a); }
  Tensor log(const Tensor& a) { return g.unary(Unary::log, a); }
  Tensor rowsum(const Tensor& a) { return g.reduce_rows(Reduce::sum, a); }
  Tensor rowmax(const Tensor& a) { return g.reduce_rows(Reduce::max, a); }
  Tensor sum(const Tensor& a) { return g.sum_all(a); }
  // log Σ exp over each row, with the row maximum taken out first.
  Tensor logsumexp(const Tensor& a, const Tensor& m, Tensor* e, Tensor* s) {
    *e = exp(sub(a, m));
    *s = rowsum(*e);
    return add(log(*s), m);
  }
};
}  // namespace

TensorMap chain_softmax_ce(GenericOps& g, const TensorMap& in, const Params&) {
  Chain c{g};
  const Tensor& z = in.at("logits");
  const Tensor& y = in.at("labels");
  const int64_t B = z.dim(0), C = z.dim(1);
  // forward: shifted logits, their exponentials and log-sum, minus the target's logit
  Tensor m = c.rowmax(z);
  Tensor s = c.sub(z, m);
  Tensor e = c.exp(s);
  Tensor se = c.rowsum(e);
  Tensor per_row = c.sub(c.log(se), g.pick(s, y));
  Tensor loss = c.scale(c.sum(per_row), 1.0 / double(B));
  // backward of the mean: (softmax − onehot) / B
  Tensor grad = c.scale(c.sub(c.div(e, se), g.one_hot(y, C)), 1.0 / double(B));
  return {{"loss", loss}, {"grad_logits", grad}};
}

TensorMap chain_center(GenericOps& g, const TensorMap& in, const Params& p) {
  Chain c{g};
  const Tensor &x = in.at("features"), &y = in.at("labels"), &centers = in.at("centers");
  const int64_t B = x.dim(0), C = centers.dim(0);
  // forward: each sample's offset from its class center
  Tensor diff = c.sub(x, g.gather_rows(centers, y));
  Tensor loss = c.scale(c.sum(c.rowsum(c.mul(diff, diff))), 0.5 / double(B));
  Tensor grad = c.scale(diff, 1.0 / double(B));
  // update: per-class sums of (c − x) and counts, then c ← c − α·Σ/(1 + n)
  Tensor counts = g.index_add_rows(g.full({B, 1}, 1.0f), y, C);
  Tensor delta = c.div(g.index_add_rows(c.scale(diff, -1.0), y, C), c.shift(counts, 1.0));
  Tensor moved = c.sub(centers, c.scale(delta, p.at("alpha")));
  return {{"loss", loss}, {"grad_features", grad}, {"centers", moved}};
}

TensorMap chain_snnl(GenericOps& g, const TensorMap& in, const Params& p) {
  Chain c{g};
  const Tensor &x = in.at("features"), &y = in.at("labels");
  const int64_t B = x.dim(0);
  const double T = p.at("temperature");
  // forward: squared distances by the Gram form, clamped, as logits a = −d/T
  Tensor sq = c.rowsum(c.mul(x, x));
  Tensor d = c.add(c.add(c.scale(g.matmul(x, false, x, true), -2.0), sq), g.transpose(sq));
  Tensor a = c.scale(g.unary(Unary::clamp_min, d, 0.0f), -1.0 / T);
  Tensor not_self = c.shift(c.scale(g.eye(B), -1.0), 1.0);
  Tensor same = c.mul(g.same_label(y), not_self);
  Tensor valid = g.unary(Unary::greater, c.rowsum(same), 0.0f);  // anchors with a partner
  Tensor a_all = g.masked_fill(a, not_self, -kInf);
  Tensor a_same = g.masked_fill(a, same, -kInf);
  Tensor e_all, s_all, e_same, s_same;
  Tensor lse_all = c.logsumexp(a_all, c.rowmax(a_all), &e_all, &s_all);
  Tensor lse_same =
      c.logsumexp(a_same, g.masked_fill(c.rowmax(a_same), valid, 0.0f), &e_same, &s_same);
  Tensor per_anchor = g.masked_fill(c.sub(lse_all, lse_same), valid, 0.0f);
  Tensor count = g.unary(Unary::clamp_min, c.sum(valid), 1.0f);
  Tensor loss = c.div(c.sum(per_anchor), count);
  // backward: dℓ_i/da_ik = p_ik − q_ik on counted anchors, then through d to x:
  // ∂L/∂x = 2·(rowsum(S)·x − S·x) with S = G + Gᵀ, G = ∂L/∂d
  Tensor pq = g.masked_fill(c.sub(c.div(e_all, s_all), c.div(e_same, s_same)), valid, 0.0f);
  Tensor gd = c.scale(c.div(pq, count), -1.0 / T);
  Tensor S = c.add(gd, g.transpose(gd));
  Tensor grad = c.scale(c.sub(c.mul(x, c.rowsum(S)), g.matmul(S, false, x, false)), 2.0);
  return {{"loss", loss}, {"grad_features", grad}};
}

TensorMap chain_s2r(GenericOps& g, const TensorMap& in, const Params& p) {
  Chain c{g};
  const Tensor &x = in.at("features"), &y = in.at("labels"), &centers = in.at("centers");
  const Tensor var = in.at("variances").view({centers.dim(0), 1});
  const int64_t B = x.dim(0), C = centers.dim(0);
  const double k = p.at("slope"), eps = p.at("eps");
  // forward: center error d, its class variance v, z, the sigmoid weight w = 2s
  Tensor diff = c.sub(x, g.gather_rows(centers, y));
  Tensor d = c.rowsum(c.mul(diff, diff));
  Tensor v = g.gather_rows(var, y);
  Tensor ve = c.shift(v, eps);
  Tensor s = g.unary(Unary::sigmoid, c.scale(c.div(c.sub(d, v), ve), k));
  Tensor w = c.scale(s, 2.0);
  Tensor loss = c.scale(c.sum(c.mul(w, d)), 0.5 / double(B));
  // backward: (w + d·∂w/∂d)·(x − c)/B, ∂w/∂d = 2k·s(1 − s)/(v + ε)
  Tensor factor = w;
  if (p.at("weight_grad") == 0) {
    Tensor dw = c.div(c.scale(c.mul(s, c.shift(c.scale(s, -1.0), 1.0)), 2.0 * k), ve);
    factor = c.add(w, c.mul(d, dw));
  }
  Tensor grad = c.scale(c.mul(diff, factor), 1.0 / double(B));
  // update: centers as in center loss, variances toward the batch's d with the same rule
  Tensor denom = c.shift(g.index_add_rows(g.full({B, 1}, 1.0f), y, C), 1.0);
  Tensor dc = c.div(g.index_add_rows(c.scale(diff, -1.0), y, C), denom);
  Tensor dv = c.div(g.index_add_rows(c.sub(v, d), y, C), denom);
  const double alpha = p.at("alpha");
  Tensor new_c = c.sub(centers, c.scale(dc, alpha));
  Tensor new_v = c.sub(var, c.scale(dv, alpha)).view(in.at("variances").shape());
  return {{"loss", loss}, {"grad_features", grad}, {"centers", new_c}, {"variances", new_v}};
}

TensorMap chain_sgd(GenericOps& g, const TensorMap& in, const Params& p) {
  Chain c{g};
  const Tensor &w = in.at("params"), &buf = in.at("m");
  const double lr = p.at("lr"), mu = p.at("momentum"), wd = p.at("weight_decay");
  // As a framework's per-parameter loop: each line one pass (decay only when asked for).
  Tensor grad = wd != 0 ? c.add(in.at("grads"), c.scale(w, wd)) : in.at("grads");
  Tensor step = grad, new_buf = buf;
  if (mu != 0) {
    new_buf = c.add(c.scale(buf, mu), grad);
    step = p.at("nesterov") == 1 ? c.add(grad, c.scale(new_buf, mu)) : new_buf;
  }
  return {{"params", c.sub(w, c.scale(step, lr))}, {"m", new_buf}};
}

TensorMap chain_adam(GenericOps& g, const TensorMap& in, const Params& p) {
  Chain c{g};
  const double lr = p.at("lr"), b1 = p.at("beta1"), b2 = p.at("beta2"), eps = p.at("eps");
  const double wd = p.at("weight_decay"), t = p.at("step");
  Tensor w = in.at("params"), grad = in.at("grads");
  if (wd != 0 && p.at("decoupled") == 1) w = c.scale(w, 1.0 - lr * wd);
  if (wd != 0 && p.at("decoupled") == 0) grad = c.add(grad, c.scale(w, wd));
  Tensor m = c.add(c.scale(in.at("m"), b1), c.scale(grad, 1.0 - b1));
  Tensor v = c.add(c.scale(in.at("v"), b2), c.scale(c.mul(grad, grad), 1.0 - b2));
  const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
  Tensor denom = c.shift(c.scale(g.unary(Unary::sqrt, v), 1.0 / std::sqrt(bc2)), eps);
  Tensor new_w = c.sub(w, c.scale(c.div(m, denom), lr / bc1));
  return {{"params", new_w}, {"m", m}, {"v", v}};
}

TensorMap chain_prelu(GenericOps& g, const TensorMap& in, const Params&) {
  Chain c{g};
  const Tensor& x0 = in.at("x");
  const Tensor& a = in.at("weight");
  const int64_t N = x0.dim(0), Ch = x0.dim(1), S = x0.numel() / std::max<int64_t>(N * Ch, 1);
  // Rows of [N·Ch, S], each with its channel's slope (a framework's broadcast of a [Ch]).
  const Tensor x = x0.view({N * Ch, S}), dy = in.at("grad_y").view({N * Ch, S});
  std::vector<int32_t> channel(N * Ch);
  for (int64_t r = 0; r < N * Ch; ++r) channel[r] = int32_t(a.numel() == 1 ? 0 : r % Ch);
  Tensor slope =
      g.gather_rows(a.view({a.numel(), 1}), Tensor::from_i32(channel, {N * Ch}, g.device()));
  // forward: relu(x) + a·min(x, 0)
  Tensor neg = g.unary(Unary::clamp_max, x, 0.0f);
  Tensor y = c.add(g.unary(Unary::clamp_min, x, 0.0f), c.mul(neg, slope));
  // backward: dx = dy·[x > 0] + a·dy·[x ≤ 0]; da = Σ dy·min(x, 0) over each slope's elements
  Tensor pos = g.unary(Unary::greater, x, 0.0f);
  Tensor dx = c.add(c.mul(dy, pos), c.mul(c.mul(dy, c.shift(c.scale(pos, -1.0), 1.0)), slope));
  Tensor per_row = c.rowsum(c.mul(dy, neg)).view({N, Ch});
  Tensor da = a.numel() == 1 ? c.sum(per_row) : c.rowsum(g.transpose(per_row));
  return {{"y", y.view(x0.shape())},
          {"grad_x", dx.view(x0.shape())},
          {"grad_weight", da.view(a.shape())}};
}

// ---- references --------------------------------------------------------------------------------

namespace {

// in[name], or an undefined tensor when that input was left out (an optional bias).
Tensor optional_input(const TensorMap& in, const char* name) {
  const auto it = in.find(name);
  return it == in.end() ? Tensor() : it->second;
}

// A layer's forward and backward results under the kernel's output names; grad_bias only
// when there is a bias.
TensorMap layer_outputs(const Tensor& y, const Tensor& dx, const Tensor& dw, const Tensor& db) {
  TensorMap out{{"y", y}, {"grad_x", dx}, {"grad_weight", dw}};
  if (db.defined()) out["grad_bias"] = db;
  return out;
}

class ChainReference final : public Reference {
 public:
  ChainReference(ChainFn fn, const TensorMap& in, const Params& p)
      : fn_(std::move(fn)), in_(in), p_(p), g_(generic_ops(first_defined(in).device())) {}
  std::string name() const override { return "unfused chain"; }
  void run() override { out_ = fn_(g_, in_, p_); }
  TensorMap outputs() override { return out_; }

 private:
  ChainFn fn_;
  TensorMap in_;
  Params p_;
  GenericOps& g_;
  TensorMap out_;
};

// ---- oneDNN convolution, called directly -------------------------------------------------------
using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

class OnednnConv final : public Reference {
 public:
  OnednnConv(const TensorMap& in, const Params& p) : eng_(dnnl::engine::kind::cpu, 0), st_(eng_) {
    const Tensor &x = in.at("x"), &w = in.at("weight");
    const auto b = in.find("bias");
    bias_ = b != in.end() && b->second.defined();
    const int64_t s = int64_t(p.at("stride")), pad = int64_t(p.at("pad"));
    const memory::dims xd(x.shape().begin(), x.shape().end()),
        wd(w.shape().begin(), w.shape().end());
    const memory::dims yd{x.dim(0), w.dim(0), (x.dim(2) + 2 * pad - w.dim(2)) / s + 1,
                          (x.dim(3) + 2 * pad - w.dim(3)) / s + 1};
    y_shape_ = Shape(yd.begin(), yd.end());
    x_shape_ = x.shape();
    w_shape_ = w.shape();
    const memory::dims strides{s, s}, padding{pad, pad};
    const memory::desc xa(xd, dt::f32, tag::any), wa(wd, dt::f32, tag::any),
        ya(yd, dt::f32, tag::any), ba({w.dim(0)}, dt::f32, tag::x);
    // The primitives oneDNN picks for these shapes, each in its preferred layouts.
    fwd_pd_ = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                        dnnl::algorithm::convolution_direct, xa, wa,
                                        bias_ ? ba : memory::desc(), ya, strides, padding, padding),
        eng_);
    bwd_d_pd_ = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, xa, wa, ya,
                                              strides, padding, padding),
        eng_, fwd_pd_);
    bwd_w_pd_ = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, xa, wa,
                                                 bias_ ? ba : memory::desc(), ya, strides, padding,
                                                 padding),
        eng_, fwd_pd_);
    fwd_ = dnnl::convolution_forward(fwd_pd_);
    bwd_d_ = dnnl::convolution_backward_data(bwd_d_pd_);
    bwd_w_ = dnnl::convolution_backward_weights(bwd_w_pd_);
    // Inputs are laid out once, outside the timing: this is oneDNN alone.
    const Tensor dy = in.at("grad_y");
    x_fwd_ = laid_out(x, tag::nchw, fwd_pd_.src_desc());
    w_fwd_ = laid_out(w, tag::oihw, fwd_pd_.weights_desc());
    w_bwd_ = laid_out(w, tag::oihw, bwd_d_pd_.weights_desc());
    dy_bwd_d_ = laid_out(dy, tag::nchw, bwd_d_pd_.diff_dst_desc());
    x_bwd_w_ = laid_out(x, tag::nchw, bwd_w_pd_.src_desc());
    dy_bwd_w_ = laid_out(dy, tag::nchw, bwd_w_pd_.diff_dst_desc());
    if (bias_) b_ = memory(ba, eng_, const_cast<void*>(b->second.raw()));
    if (bias_) db_ = memory(ba, eng_);
    y_ = memory(fwd_pd_.dst_desc(), eng_);
    dx_ = memory(bwd_d_pd_.diff_src_desc(), eng_);
    dw_ = memory(bwd_w_pd_.diff_weights_desc(), eng_);
  }

  std::string name() const override { return "oneDNN direct"; }

  void run() override {
    std::unordered_map<int, memory> f{
        {DNNL_ARG_SRC, x_fwd_}, {DNNL_ARG_WEIGHTS, w_fwd_}, {DNNL_ARG_DST, y_}};
    if (bias_) f[DNNL_ARG_BIAS] = b_;
    fwd_.execute(st_, f);
    bwd_d_.execute(
        st_,
        {{DNNL_ARG_DIFF_DST, dy_bwd_d_}, {DNNL_ARG_WEIGHTS, w_bwd_}, {DNNL_ARG_DIFF_SRC, dx_}});
    std::unordered_map<int, memory> w{
        {DNNL_ARG_SRC, x_bwd_w_}, {DNNL_ARG_DIFF_DST, dy_bwd_w_}, {DNNL_ARG_DIFF_WEIGHTS, dw_}};
    if (bias_) w[DNNL_ARG_DIFF_BIAS] = db_;
    bwd_w_.execute(st_, w);
    st_.wait();
  }

  TensorMap outputs() override {
    return layer_outputs(plain(y_, y_shape_, tag::nchw), plain(dx_, x_shape_, tag::nchw),
                         plain(dw_, w_shape_, tag::oihw),
                         bias_ ? plain(db_, {w_shape_[0]}, tag::x) : Tensor());
  }

 private:
  memory laid_out(const Tensor& t, tag user_tag, const memory::desc& want) {
    const memory::dims d(t.shape().begin(), t.shape().end());
    memory user(memory::desc(d, dt::f32, user_tag), eng_, const_cast<void*>(t.raw()));
    memory m(want, eng_);
    dnnl::reorder(user, m).execute(st_, user, m);
    st_.wait();
    return m;
  }

  Tensor plain(memory& m, const Shape& shape, tag user_tag) {
    Tensor t = Tensor::empty(shape);
    const memory::dims d(shape.begin(), shape.end());
    memory user(memory::desc(d, dt::f32, user_tag), eng_, t.raw());
    dnnl::reorder(m, user).execute(st_, m, user);
    st_.wait();
    return t;
  }

  dnnl::engine eng_;
  dnnl::stream st_;
  bool bias_ = false;
  Shape x_shape_, w_shape_, y_shape_;
  dnnl::convolution_forward::primitive_desc fwd_pd_;
  dnnl::convolution_backward_data::primitive_desc bwd_d_pd_;
  dnnl::convolution_backward_weights::primitive_desc bwd_w_pd_;
  dnnl::convolution_forward fwd_;
  dnnl::convolution_backward_data bwd_d_;
  dnnl::convolution_backward_weights bwd_w_;
  memory x_fwd_, w_fwd_, w_bwd_, dy_bwd_d_, x_bwd_w_, dy_bwd_w_, b_, db_, y_, dx_, dw_;
};

// ---- linear layer and X·Xᵀ by oneDNN's sgemm ---------------------------------------------------
class SgemmLinear final : public Reference {
 public:
  SgemmLinear(const TensorMap& in, const Params&)
      : x_(in.at("x")), w_(in.at("weight")), dy_(in.at("grad_y")) {
    b_ = optional_input(in, "bias");
    N_ = x_.dim(0), I_ = x_.dim(1), O_ = w_.dim(0);
    y_ = Tensor::empty({N_, O_}), dx_ = Tensor::empty({N_, I_}), dw_ = Tensor::empty({O_, I_});
    if (b_.defined()) db_ = Tensor::empty({O_});
  }
  std::string name() const override { return "oneDNN sgemm"; }
  void run() override {
    float beta = 0.0f;
    if (b_.defined()) {  // y starts as the bias rows; the GEMM adds x·Wᵀ (beta = 1)
      for (int64_t n = 0; n < N_; ++n)
        std::memcpy(y_.data() + n * O_, b_.data(), O_ * sizeof(float));
      beta = 1.0f;
    }
    CpuOps::sgemm(false, true, N_, O_, I_, x_.data(), I_, w_.data(), I_, beta, y_.data(), O_);
    CpuOps::sgemm(false, false, N_, I_, O_, dy_.data(), O_, w_.data(), I_, 0.0f, dx_.data(), I_);
    CpuOps::sgemm(true, false, O_, I_, N_, dy_.data(), O_, x_.data(), I_, 0.0f, dw_.data(), I_);
    if (db_.defined()) {
      for (int64_t o = 0; o < O_; ++o) {
        double s = 0;
        for (int64_t n = 0; n < N_; ++n) s += dy_.data()[n * O_ + o];
        db_.data()[o] = float(s);
      }
    }
  }
  TensorMap outputs() override { return layer_outputs(y_, dx_, dw_, db_); }

 private:
  Tensor x_, w_, b_, dy_, y_, dx_, dw_, db_;
  int64_t N_ = 0, I_ = 0, O_ = 0;
};

class SgemmGram final : public Reference {
 public:
  explicit SgemmGram(const TensorMap& in) : x_(in.at("features")) {
    g_ = Tensor::empty({x_.dim(0), x_.dim(0)});
  }
  std::string name() const override { return "oneDNN sgemm X·Xᵀ"; }
  void run() override {
    const int64_t B = x_.dim(0), D = x_.dim(1);
    CpuOps::sgemm(false, true, B, B, D, x_.data(), D, x_.data(), D, 0.0f, g_.data(), B);
  }
  TensorMap outputs() override { return {}; }

 private:
  Tensor x_, g_;
};

#ifdef SIGMAR_CUDA
// ---- the same on the GPU: cuDNN and cuBLAS called directly (tools/kernels_gpu.cu) --------------
class CudnnConvRef final : public Reference {
 public:
  CudnnConvRef(const TensorMap& in, const Params& p) : in_(in) {
    const Tensor &x = in.at("x"), &w = in.at("weight");
    b_ = optional_input(in, "bias");
    gpu::ConvShape s{x.dim(0), x.dim(1), x.dim(2),         x.dim(3),           w.dim(0),
                     w.dim(2), w.dim(3), int(p.at("pad")), int(p.at("stride"))};
    conv_ = gpu::conv_create(s, cuda::stream());
    const int64_t Ho = (s.H + 2 * s.pad - s.R) / s.stride + 1;
    const int64_t Wo = (s.W + 2 * s.pad - s.S) / s.stride + 1;
    y_ = Tensor::empty({s.N, s.K, Ho, Wo}, Device::cuda);
    dx_ = Tensor::empty(x.shape(), Device::cuda);
    dw_ = Tensor::empty(w.shape(), Device::cuda);
    if (b_.defined()) db_ = Tensor::empty({s.K}, Device::cuda);
  }
  ~CudnnConvRef() override { gpu::conv_destroy(conv_); }
  std::string name() const override { return "cuDNN direct"; }
  void run() override {
    gpu::conv_run(conv_, in_.at("x").data(), in_.at("weight").data(),
                  b_.defined() ? b_.data() : nullptr, in_.at("grad_y").data(), y_.data(),
                  dx_.data(), dw_.data(), db_.defined() ? db_.data() : nullptr);
  }
  TensorMap outputs() override { return layer_outputs(y_, dx_, dw_, db_); }

 private:
  TensorMap in_;
  Tensor b_, y_, dx_, dw_, db_;
  gpu::CudnnConv* conv_ = nullptr;
};

class CublasLinear final : public Reference {
 public:
  CublasLinear(const TensorMap& in, const Params&) : in_(in) {
    b_ = optional_input(in, "bias");
    N_ = in.at("x").dim(0), I_ = in.at("x").dim(1), O_ = in.at("weight").dim(0);
    y_ = Tensor::empty({N_, O_}, Device::cuda);
    dx_ = Tensor::empty({N_, I_}, Device::cuda);
    dw_ = Tensor::empty({O_, I_}, Device::cuda);
    ones_ = Tensor::full({N_}, 1.0f, Device::cuda);
    if (b_.defined()) db_ = Tensor::empty({O_}, Device::cuda);
  }
  std::string name() const override { return "cuBLAS direct"; }
  void run() override {
    gpu::linear(in_.at("x").data(), in_.at("weight").data(), b_.defined() ? b_.data() : nullptr,
                in_.at("grad_y").data(), ones_.data(), y_.data(), dx_.data(), dw_.data(),
                db_.defined() ? db_.data() : nullptr, N_, I_, O_, cuda::stream());
  }
  TensorMap outputs() override { return layer_outputs(y_, dx_, dw_, db_); }

 private:
  TensorMap in_;
  Tensor b_, y_, dx_, dw_, db_, ones_;
  int64_t N_ = 0, I_ = 0, O_ = 0;
};

class CublasGram final : public Reference {
 public:
  explicit CublasGram(const TensorMap& in) : x_(in.at("features")) {
    g_ = Tensor::empty({x_.dim(0), x_.dim(0)}, Device::cuda);
  }
  std::string name() const override { return "cuBLAS X·Xᵀ"; }
  void run() override {
    const int64_t B = x_.dim(0), D = x_.dim(1);
    gpu::gemm(false, true, B, B, D, x_.data(), D, x_.data(), D, 0.0f, g_.data(), B, cuda::stream());
  }
  TensorMap outputs() override { return {}; }

 private:
  Tensor x_, g_;
};

class EmptyLaunch final : public Reference {
 public:
  std::string name() const override { return "empty kernel launch"; }
  void run() override { gpu::empty_kernel(cuda::stream()); }
  TensorMap outputs() override { return {}; }
};
#endif

bool on_gpu(const TensorMap& in) { return first_defined(in).device() == Device::cuda; }

[[noreturn]] void no_cuda() {
  throw std::runtime_error("GPU reference: this sigmar was built without CUDA");
}

}  // namespace

std::unique_ptr<Reference> chain_reference(ChainFn fn, const TensorMap& in, const Params& p) {
  return std::make_unique<ChainReference>(std::move(fn), in, p);
}

std::unique_ptr<Reference> conv2d_library(const TensorMap& in, const Params& p) {
  if (!on_gpu(in)) return std::make_unique<OnednnConv>(in, p);
#ifdef SIGMAR_CUDA
  return std::make_unique<CudnnConvRef>(in, p);
#else
  no_cuda();
#endif
}

std::unique_ptr<Reference> linear_library(const TensorMap& in, const Params& p) {
  if (!on_gpu(in)) return std::make_unique<SgemmLinear>(in, p);
#ifdef SIGMAR_CUDA
  return std::make_unique<CublasLinear>(in, p);
#else
  no_cuda();
#endif
}

std::unique_ptr<Reference> gram_library(const TensorMap& in, const Params&) {
  if (!on_gpu(in)) return std::make_unique<SgemmGram>(in);
#ifdef SIGMAR_CUDA
  return std::make_unique<CublasGram>(in);
#else
  no_cuda();
#endif
}

std::unique_ptr<Reference> empty_launch(const TensorMap& in, const Params&) {
  if (!on_gpu(in)) bad("an empty kernel launch is a GPU reference");
#ifdef SIGMAR_CUDA
  return std::make_unique<EmptyLaunch>();
#else
  no_cuda();
#endif
}

}  // namespace sigmar::lab
