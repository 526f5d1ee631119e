// The CPU backend: what cuDNN and cuBLAS do on the GPU, oneDNN does here (convolutions and
// GEMMs); pooling, batch norm and elementwise ops are OpenMP loops; losses and optimizer
// updates are our fused kernels' CPU twins (kernels/*.cpp).
//
// Tensors stay NCHW between ops. Each convolution lets oneDNN pick its fastest layout
// (format_tag::any, blocked nChw16c on AVX-512) and reorders in and out around the call;
// the plans (primitives and their scratch buffers) are cached per shape.
#include "engine/backend.hpp"

#include "kernels/kernels.hpp"

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <tuple>

#ifdef SIGMAR_CUDA
#include "engine/cuda/runtime.hpp"
#endif

namespace sigmar {

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

void expect_cpu(const Tensor& t, const char* op) {
  if (t.defined() && t.device() != Device::cpu) {
    throw std::invalid_argument(std::string(op) + ": tensor on " + device_name(t.device()) +
                                " given to the CPU backend");
  }
}

// ---- convolution plans ------------------------------------------------------------------

using ConvKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int,
                           int, bool>;

struct ConvPlan {
  memory::desc x_md, w_md, b_md, y_md;  // user (plain) layouts
  memory::dims strides, pad;
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_w_pd;
  dnnl::convolution_backward_weights bwd_w;
  std::map<int, memory> scratch;  // reorder targets, reused call after call
  // Which tensor the forward last reordered into scratch slot 0. The weight-gradient pass
  // needs the same input in the same blocked layout: when the tensor is unchanged since (same
  // storage, offset and version), it reads slot 0 instead of reordering the input again.
  std::weak_ptr<Storage> x_owner;
  size_t x_offset = 0;
  uint64_t x_version = 0;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  Device device() const override { return Device::cpu; }

  std::string describe() const override {
    const dnnl_version_t* v = dnnl_version();
    return "CPU, " + std::to_string(omp_get_max_threads()) + " threads, oneDNN " +
           std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch);
  }

  // -------------------------------------------------------------------------------------
  Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b,
                        Conv2dArgs args) override {
    expect_cpu(x, "conv2d");
    ConvPlan& p = plan(x, w, b.defined(), args);
    Tensor y = Tensor::empty(shape_of(p.y_md), Device::cpu);
    memory xm = to_layout(p, 0, p.x_md, x.raw(), p.fwd_pd.src_desc());
    remember_input(p, x);
    memory wm = to_layout(p, 1, p.w_md, w.raw(), p.fwd_pd.weights_desc());
    memory ym = scratch_or_user(p, 2, p.fwd_pd.dst_desc(), p.y_md, y.raw());
    std::unordered_map<int, memory> io{{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm},
                                       {DNNL_ARG_DST, ym}};
    if (b.defined()) io[DNNL_ARG_BIAS] = memory(p.b_md, engine_, const_cast<void*>(b.raw()));
    p.fwd.execute(stream_, io);
    from_layout(ym, p.y_md, y.raw());
    stream_.wait();
    return y;
  }

  ConvGrads conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Conv2dArgs args,
                            bool need_dx, bool need_dw, bool need_db) override {
    expect_cpu(x, "conv2d_backward");
    ConvPlan& p = plan(x, w, need_db, args);
    ConvGrads g;
    if (need_dx) ensure_bwd_data(p);
    if (need_dw || need_db) ensure_bwd_weights(p, need_db);
    // Both backward primitives read dy; reorder it once when they want the same layout.
    const memory::desc& dy_want =
        need_dx ? p.bwd_data_pd.diff_dst_desc() : p.bwd_w_pd.diff_dst_desc();
    memory dym = to_layout(p, 3, p.y_md, dy.raw(), dy_want);
    if (need_dx) {
      g.dx = Tensor::empty(x.shape(), Device::cpu);
      memory wm = to_layout(p, 4, p.w_md, w.raw(), p.bwd_data_pd.weights_desc());
      memory dxm = scratch_or_user(p, 5, p.bwd_data_pd.diff_src_desc(), p.x_md, g.dx.raw());
      p.bwd_data.execute(stream_, {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_WEIGHTS, wm},
                                   {DNNL_ARG_DIFF_SRC, dxm}});
      from_layout(dxm, p.x_md, g.dx.raw());
    }
    if (need_dw || need_db) {
      g.dw = Tensor::empty(w.shape(), Device::cpu);
      memory xm = reordered_input_still_valid(p, x) ? p.scratch[0]
                  : to_layout(p, 6, p.x_md, x.raw(), p.bwd_w_pd.src_desc());
      memory dyw = dym.get_desc() == p.bwd_w_pd.diff_dst_desc()
                       ? dym
                       : to_layout(p, 7, p.y_md, dy.raw(), p.bwd_w_pd.diff_dst_desc());
      memory dwm = scratch_or_user(p, 8, p.bwd_w_pd.diff_weights_desc(), p.w_md, g.dw.raw());
      std::unordered_map<int, memory> io{{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dyw},
                                         {DNNL_ARG_DIFF_WEIGHTS, dwm}};
      if (need_db) {
        g.db = Tensor::empty({w.dim(0)}, Device::cpu);
        io[DNNL_ARG_DIFF_BIAS] = memory(p.b_md, engine_, g.db.raw());
      }
      p.bwd_w.execute(stream_, io);
      from_layout(dwm, p.w_md, g.dw.raw());
      if (!need_dw) g.dw = Tensor();
    }
    stream_.wait();
    return g;
  }

  // -------------------------------------------------------------------------------------
  Tensor maxpool_forward(const Tensor& x, PoolArgs a) override {
    expect_cpu(x, "max_pool2d");
    auto [N, C, H, W] = dims4(x);
    int64_t Ho = pooled(H, a, "height"), Wo = pooled(W, a, "width");
    Tensor y = Tensor::empty({N, C, Ho, Wo}, Device::cpu);
    const float* xp = x.data();
    float* yp = y.data();
#pragma omp parallel for
    for (int64_t nc = 0; nc < N * C; ++nc) {
      const float* plane = xp + nc * H * W;
      float* out = yp + nc * Ho * Wo;
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) out[i * Wo + j] = plane[window_argmax(plane, W, i, j, a)];
    }
    return y;
  }

  Tensor maxpool_backward(const Tensor& x, const Tensor&, const Tensor& dy, PoolArgs a) override {
    expect_cpu(x, "max_pool2d_backward");
    auto [N, C, H, W] = dims4(x);
    const int64_t Ho = dy.dim(2), Wo = dy.dim(3);
    Tensor dx = Tensor::empty(x.shape(), Device::cpu);
    const float* xp = x.data();
    const float* dyp = dy.data();
    float* dxp = dx.data();
    // One thread per plane: overlapping windows scatter into their own plane only. The
    // argmax is recomputed from x rather than stored: one more read of x is cheaper than an
    // index tensor written in the forward and read here.
#pragma omp parallel for
    for (int64_t nc = 0; nc < N * C; ++nc) {
      const float* plane = xp + nc * H * W;
      const float* g = dyp + nc * Ho * Wo;
      float* d = dxp + nc * H * W;
      std::fill(d, d + H * W, 0.0f);  // zeroed here, in parallel, where it is written next
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) d[window_argmax(plane, W, i, j, a)] += g[i * Wo + j];
    }
    return dx;
  }

  Tensor global_avgpool_forward(const Tensor& x) override {
    expect_cpu(x, "global_avg_pool");
    auto [N, C, H, W] = dims4(x);
    Tensor y = Tensor::empty({N, C}, Device::cpu);
    const float* xp = x.data();
    float* yp = y.data();
    const int64_t S = H * W;
#pragma omp parallel for
    for (int64_t nc = 0; nc < N * C; ++nc) {
      double s = 0;
      for (int64_t k = 0; k < S; ++k) s += xp[nc * S + k];
      yp[nc] = static_cast<float>(s / S);
    }
    return y;
  }

  Tensor global_avgpool_backward(const Tensor& dy, const Shape& xs) override {
    Tensor dx = Tensor::empty(xs, Device::cpu);
    const int64_t S = xs[2] * xs[3];
    const float* dyp = dy.data();
    float* dxp = dx.data();
#pragma omp parallel for
    for (int64_t nc = 0; nc < xs[0] * xs[1]; ++nc) {
      float v = dyp[nc] / static_cast<float>(S);
      for (int64_t k = 0; k < S; ++k) dxp[nc * S + k] = v;
    }
    return dx;
  }

  // -------------------------------------------------------------------------------------
  // Row-major GEMMs through oneDNN's sgemm: y[N,out] = x[N,in] · W[out,in]ᵀ + b.
  Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& b) override {
    expect_cpu(x, "linear");
    const int64_t N = x.dim(0), in = x.dim(1), out = w.dim(0);
    Tensor y = Tensor::empty({N, out}, Device::cpu);
    float* yp = y.data();
    float beta = 0.0f;
    if (b.defined()) {
      // Seed y with the bias rows so the GEMM adds onto them (beta = 1).
      const float* bp = b.data();
      for (int64_t n = 0; n < N; ++n) std::memcpy(yp + n * out, bp, out * sizeof(float));
      beta = 1.0f;
    }
    sgemm('N', 'T', N, out, in, x.data(), in, w.data(), in, beta, yp, out);
    return y;
  }

  ConvGrads linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, bool need_dx,
                            bool need_dw, bool need_db) override {
    expect_cpu(x, "linear_backward");
    const int64_t N = x.dim(0), in = x.dim(1), out = w.dim(0);
    ConvGrads g;
    if (need_dx) {  // dx[N,in] = dy[N,out] · W[out,in]
      g.dx = Tensor::empty({N, in}, Device::cpu);
      sgemm('N', 'N', N, in, out, dy.data(), out, w.data(), in, 0.0f, g.dx.data(), in);
    }
    if (need_dw) {  // dW[out,in] = dy[N,out]ᵀ · x[N,in]
      g.dw = Tensor::empty({out, in}, Device::cpu);
      sgemm('T', 'N', out, in, N, dy.data(), out, x.data(), in, 0.0f, g.dw.data(), in);
    }
    if (need_db) {  // db[out] = column sums of dy, in double for a sum over the batch
      g.db = Tensor::empty({out}, Device::cpu);
      const float* dyp = dy.data();
      float* dbp = g.db.data();
      for (int64_t o = 0; o < out; ++o) {
        double s = 0;
        for (int64_t n = 0; n < N; ++n) s += dyp[n * out + o];
        dbp[o] = static_cast<float>(s);
      }
    }
    return g;
  }

  // -------------------------------------------------------------------------------------
  Tensor relu_forward(const Tensor& x) override {
    Tensor y = Tensor::empty(x.shape(), Device::cpu);
    const float* xp = x.data();
    float* yp = y.data();
    const int64_t n = x.numel();
#pragma omp parallel for simd
    for (int64_t i = 0; i < n; ++i) yp[i] = xp[i] > 0.0f ? xp[i] : 0.0f;
    return y;
  }

  Tensor relu_backward(const Tensor& x, const Tensor& dy) override {
    Tensor dx = Tensor::empty(x.shape(), Device::cpu);
    const float* xp = x.data();
    const float* dyp = dy.data();
    float* dxp = dx.data();
    const int64_t n = x.numel();
    // SPEC 1: at x == 0 the derivative is the negative side's slope, 0.
#pragma omp parallel for simd
    for (int64_t i = 0; i < n; ++i) dxp[i] = xp[i] > 0.0f ? dyp[i] : 0.0f;
    return dx;
  }

  Tensor prelu_forward(const Tensor& x, const Tensor& a) override {
    expect_cpu(x, "prelu");
    auto [N, C, S] = channel_view(x);
    Tensor y = Tensor::empty(x.shape(), Device::cpu);
    kernels::prelu_forward(x.data(), a.data(), N, C, S, a.numel(), y.data());
    return y;
  }

  ConvGrads prelu_backward(const Tensor& x, const Tensor& a, const Tensor& dy) override {
    auto [N, C, S] = channel_view(x);
    ConvGrads g;
    g.dx = Tensor::empty(x.shape(), Device::cpu);
    g.dw = Tensor::empty(a.shape(), Device::cpu);
    kernels::prelu_backward(x.data(), a.data(), dy.data(), N, C, S, a.numel(), g.dx.data(),
                            g.dw.data());
    return g;
  }

  // -------------------------------------------------------------------------------------
  BatchNormOut batchnorm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               Tensor& running_mean, Tensor& running_var, float momentum,
                               float eps) override {
    expect_cpu(x, "batch_norm");
    auto [N, C, S] = channel_view(x);
    BatchNormOut out;
    out.y = Tensor::empty(x.shape(), Device::cpu);
    out.mean = Tensor::empty({C}, Device::cpu);
    out.invstd = Tensor::empty({C}, Device::cpu);
    const float* xp = x.data();
    float* yp = out.y.data();
    const float *g = gamma.data(), *bt = beta.data();
    float *rm = running_mean.data(), *rv = running_var.data();
    const double count = static_cast<double>(N * S);
#pragma omp parallel for
    for (int64_t c = 0; c < C; ++c) {
      // Two passes in double: the mean, then the biased variance around it (SPEC 1).
      double sum = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < S; ++k) sum += xp[(n * C + c) * S + k];
      const double mean = sum / count;
      double sq = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < S; ++k) {
          double d = xp[(n * C + c) * S + k] - mean;
          sq += d * d;
        }
      const double var = sq / count;
      const double invstd = 1.0 / std::sqrt(var + eps);
      out.mean.data()[c] = static_cast<float>(mean);
      out.invstd.data()[c] = static_cast<float>(invstd);
      const float scale = static_cast<float>(g[c] * invstd);
      const float shift = static_cast<float>(bt[c] - mean * g[c] * invstd);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < S; ++k) {
          int64_t i = (n * C + c) * S + k;
          yp[i] = xp[i] * scale + shift;
        }
      // Running statistics keep the unbiased variance.
      const double unbiased = count > 1 ? sq / (count - 1) : var;
      rm[c] = static_cast<float>((1 - momentum) * rm[c] + momentum * mean);
      rv[c] = static_cast<float>((1 - momentum) * rv[c] + momentum * unbiased);
    }
    return out;
  }

  Tensor batchnorm_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        const Tensor& running_mean, const Tensor& running_var,
                        float eps) override {
    expect_cpu(x, "batch_norm");
    auto [N, C, S] = channel_view(x);
    Tensor y = Tensor::empty(x.shape(), Device::cpu);
    const float* xp = x.data();
    float* yp = y.data();
#pragma omp parallel for
    for (int64_t c = 0; c < C; ++c) {
      const float invstd = 1.0f / std::sqrt(running_var.data()[c] + eps);
      const float scale = gamma.data()[c] * invstd;
      const float shift = beta.data()[c] - running_mean.data()[c] * scale;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < S; ++k) {
          int64_t i = (n * C + c) * S + k;
          yp[i] = xp[i] * scale + shift;
        }
    }
    return y;
  }

  BatchNormGrads batchnorm_backward(const Tensor& x, const Tensor& gamma,
                                    const BatchNormOut& saved, const Tensor& dy) override {
    auto [N, C, S] = channel_view(x);
    BatchNormGrads g;
    g.dx = Tensor::empty(x.shape(), Device::cpu);
    g.dgamma = Tensor::empty({C}, Device::cpu);
    g.dbeta = Tensor::empty({C}, Device::cpu);
    const float *xp = x.data(), *dyp = dy.data();
    float* dxp = g.dx.data();
    const double count = static_cast<double>(N * S);
#pragma omp parallel for
    for (int64_t c = 0; c < C; ++c) {
      const double mean = saved.mean.data()[c], invstd = saved.invstd.data()[c];
      // dβ = Σ dy, dγ = Σ dy·x̂; dx = γ·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)).
      double sdy = 0, sdyxh = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < S; ++k) {
          int64_t i = (n * C + c) * S + k;
          sdy += dyp[i];
          sdyxh += dyp[i] * (xp[i] - mean) * invstd;
        }
      g.dbeta.data()[c] = static_cast<float>(sdy);
      g.dgamma.data()[c] = static_cast<float>(sdyxh);
      const double k1 = gamma.data()[c] * invstd;
      const double mdy = sdy / count, mdyxh = sdyxh / count;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < S; ++k) {
          int64_t i = (n * C + c) * S + k;
          double xh = (xp[i] - mean) * invstd;
          dxp[i] = static_cast<float>(k1 * (dyp[i] - mdy - xh * mdyxh));
        }
    }
    return g;
  }

  // -------------------------------------------------------------------------------------
  Tensor add(const Tensor& a, const Tensor& b) override { return add_scaled(a, b, 1.0f); }

  Tensor add_scaled(const Tensor& a, const Tensor& b, float s) override {
    expect_cpu(a, "add");
    Tensor y = Tensor::empty(a.shape(), Device::cpu);
    const float *ap = a.data(), *bp = b.data();
    float* yp = y.data();
    const int64_t n = a.numel();
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; ++i) yp[i] = ap[i] + s * bp[i];
    return y;
  }

  Tensor scale_by(const Tensor& x, const Tensor& s) override {
    Tensor y = Tensor::empty(x.shape(), Device::cpu);
    const float f = s.data()[0];
    const float* xp = x.data();
    float* yp = y.data();
    const int64_t n = x.numel();
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; ++i) yp[i] = xp[i] * f;
    return y;
  }

  void add_inplace(Tensor& dst, const Tensor& src) override {
    expect_cpu(dst, "add_inplace");
    float* d = dst.data();
    const float* s = src.data();
    const int64_t n = dst.numel();
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  }

  void fill(Tensor& dst, float value) override {
    float* d = dst.data();
    for (int64_t i = 0; i < dst.numel(); ++i) d[i] = value;
  }

  // -------------------------------------------------------------------------------------
  LossOut softmax_ce(const Tensor& logits, const Tensor& labels) override {
    const int64_t B = logits.dim(0), C = logits.dim(1);
    kernels::check_labels(labels.data_i32(), B, C, "softmax cross-entropy");
    LossOut out = fresh_loss(logits.shape());
    out.loss.data()[0] = kernels::softmax_ce(logits.data(), labels.data_i32(), B, C,
                                             out.grad.data());
    return out;
  }

  LossOut center_loss(const Tensor& x, const Tensor& labels, const Tensor& centers) override {
    const int64_t B = x.dim(0), D = x.dim(1);
    check_state(x, labels, centers, "center loss");
    LossOut out = fresh_loss(x.shape());
    out.loss.data()[0] = kernels::center_loss(x.data(), labels.data_i32(), centers.data(), B, D,
                                              out.grad.data());
    return out;
  }

  void center_update(const Tensor& x, const Tensor& labels, Tensor& centers,
                     float alpha) override {
    check_state(x, labels, centers, "center loss");
    kernels::center_update(x.data(), labels.data_i32(), centers.data(), x.dim(0), x.dim(1),
                           centers.dim(0), alpha);
  }

  LossOut snnl(const Tensor& x, const Tensor& labels, float temperature) override {
    const int64_t B = x.dim(0), D = x.dim(1);
    check_batch(x, labels, "soft nearest neighbour loss");
    LossOut out = fresh_loss(x.shape());
    out.loss.data()[0] = kernels::snnl(x.data(), labels.data_i32(), B, D, temperature,
                                       out.grad.data());
    return out;
  }

  LossOut s2r_loss(const Tensor& x, const Tensor& labels, const Tensor& centers,
                   const Tensor& variances, S2RSettings s) override {
    check_state(x, labels, centers, "sigma-squared reduction loss");
    LossOut out = fresh_loss(x.shape());
    kernels::S2RParams p{s.slope, s.detached, s.eps};
    out.loss.data()[0] = kernels::s2r_loss(x.data(), labels.data_i32(), centers.data(),
                                           variances.data(), x.dim(0), x.dim(1), p,
                                           out.grad.data());
    return out;
  }

  void s2r_update(const Tensor& x, const Tensor& labels, Tensor& centers, Tensor& variances,
                  float alpha) override {
    check_state(x, labels, centers, "sigma-squared reduction loss");
    kernels::s2r_update(x.data(), labels.data_i32(), centers.data(), variances.data(), x.dim(0),
                        x.dim(1), centers.dim(0), alpha);
  }

  // -------------------------------------------------------------------------------------
  void sgd_step(Tensor& w, const Tensor& g, Tensor& buf, SgdSettings s) override {
    kernels::sgd_step(w.data(), g.data(), buf.data(), w.numel(), s.lr, s.momentum,
                      s.weight_decay, s.nesterov);
  }

  void adam_step(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, int64_t step,
                 AdamSettings s) override {
    kernels::adam_step(w.data(), g.data(), m.data(), v.data(), w.numel(), step, s.lr, s.beta1,
                       s.beta2, s.eps, s.weight_decay, s.decoupled);
  }

  // -------------------------------------------------------------------------------------
  Tensor gather_normalize(const Tensor& images, const Tensor& indices,
                          const std::vector<float>& mean,
                          const std::vector<float>& stddev) override {
    const int64_t N = images.dim(0), C = images.dim(1);
    const int64_t S = images.numel() / std::max<int64_t>(N * C, 1);
    const int64_t B = indices.numel();
    Tensor out = Tensor::empty({B, C, images.dim(2), images.dim(3)}, Device::cpu);
    const uint8_t* src = images.data_u8();
    const int32_t* idx = indices.data_i32();
    float* dst = out.data();
    for (int64_t b = 0; b < B; ++b) {
      if (idx[b] < 0 || idx[b] >= N) {
        throw std::out_of_range("gather_normalize: index " + std::to_string(idx[b]) +
                                " outside a set of " + std::to_string(N) + " images");
      }
    }
#pragma omp parallel for
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        const float scale = 1.0f / (255.0f * stddev[c]), shift = -mean[c] / stddev[c];
        const uint8_t* s = src + (idx[b] * C + c) * S;
        float* d = dst + (b * C + c) * S;
        for (int64_t k = 0; k < S; ++k) d[k] = s[k] * scale + shift;
      }
    return out;
  }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<ConvKey, std::unique_ptr<ConvPlan>> plans_;

  static std::tuple<int64_t, int64_t, int64_t, int64_t> dims4(const Tensor& x) {
    return {x.dim(0), x.dim(1), x.dim(2), x.dim(3)};
  }

  // [N,C] or [N,C,H,W] seen as [N, C, S]
  static std::tuple<int64_t, int64_t, int64_t> channel_view(const Tensor& x) {
    int64_t S = 1;
    for (int64_t i = 2; i < x.ndim(); ++i) S *= x.dim(static_cast<int>(i));
    return {x.dim(0), x.dim(1), S};
  }

  static int64_t pooled(int64_t n, PoolArgs a, const char* what) {
    if (n < a.kernel) {
      throw std::invalid_argument(std::string("max_pool2d: input ") + what + " " +
                                  std::to_string(n) + " is smaller than the window " +
                                  std::to_string(a.kernel));
    }
    return (n - a.kernel) / a.stride + 1;
  }

  // SPEC 1: the first maximum in row-major order of the window wins (strict >); a NaN wins
  // over numbers, so it propagates as in PyTorch. Returns the index inside the plane.
  static int64_t window_argmax(const float* plane, int64_t W, int64_t i, int64_t j,
                               PoolArgs a) {
    const int64_t top = i * a.stride, left = j * a.stride;
    int64_t best = top * W + left;
    if (a.kernel == 2) {  // LeNet++'s pool, unrolled: the four candidates in scan order
      const int64_t c[3] = {best + 1, best + W, best + W + 1};
      for (int64_t k : c) best = takes_over(plane[k], plane[best]) ? k : best;
      return best;
    }
    for (int64_t di = 0; di < a.kernel; ++di)
      for (int64_t dj = 0; dj < a.kernel; ++dj) {
        const int64_t k = (top + di) * W + left + dj;
        best = takes_over(plane[k], plane[best]) ? k : best;
      }
    return best;
  }

  static bool takes_over(float candidate, float best) {
    return candidate > best || candidate != candidate;
  }

  static Shape shape_of(const memory::desc& md) {
    auto d = md.dims();
    return Shape(d.begin(), d.end());
  }

  static LossOut fresh_loss(const Shape& grad_shape) {
    return {Tensor::empty({1}, Device::cpu), Tensor::empty(grad_shape, Device::cpu)};
  }

  static void check_batch(const Tensor& x, const Tensor& labels, const char* what) {
    if (x.ndim() != 2 || labels.dtype() != DType::i32 || labels.numel() != x.dim(0)) {
      throw std::invalid_argument(std::string(what) + ": features must be [B,D] with int32 " +
                                  "labels [B]; got " + shape_str(x.shape()) + " and " +
                                  shape_str(labels.shape()));
    }
  }

  static void check_state(const Tensor& x, const Tensor& labels, const Tensor& centers,
                          const char* what) {
    check_batch(x, labels, what);
    if (centers.ndim() != 2 || centers.dim(1) != x.dim(1)) {
      throw std::invalid_argument(std::string(what) + ": centers " +
                                  shape_str(centers.shape()) + " do not match features " +
                                  shape_str(x.shape()));
    }
    kernels::check_labels(labels.data_i32(), labels.numel(), centers.dim(0), what);
  }

  void sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    dnnl_status_t st = dnnl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    if (st != dnnl_success) {
      throw std::runtime_error("oneDNN sgemm failed with status " + std::to_string(st));
    }
  }

  ConvPlan& plan(const Tensor& x, const Tensor& w, bool bias, Conv2dArgs a) {
    if (a.stride < 1 || a.pad < 0) {
      throw std::invalid_argument("conv2d: stride must be >= 1 and padding >= 0");
    }
    const int64_t N = x.dim(0), Ci = x.dim(1), H = x.dim(2), W = x.dim(3);
    const int64_t Co = w.dim(0), kh = w.dim(2), kw = w.dim(3);
    ConvKey key{N, Ci, H, W, Co, kh, kw, a.stride, a.pad, bias};
    auto it = plans_.find(key);
    if (it != plans_.end()) return *it->second;
    const int64_t Ho = (H + 2 * a.pad - kh) / a.stride + 1;
    const int64_t Wo = (W + 2 * a.pad - kw) / a.stride + 1;
    if (Ho < 1 || Wo < 1) {
      throw std::invalid_argument("conv2d: kernel " + shape_str(w.shape()) +
                                  " does not fit input " + shape_str(x.shape()));
    }
    auto p = std::make_unique<ConvPlan>();
    p->x_md = memory::desc({N, Ci, H, W}, dt::f32, tag::nchw);
    p->w_md = memory::desc({Co, Ci, kh, kw}, dt::f32, tag::oihw);
    p->b_md = memory::desc({Co}, dt::f32, tag::x);
    p->y_md = memory::desc({N, Co, Ho, Wo}, dt::f32, tag::nchw);
    p->strides = {a.stride, a.stride};
    p->pad = {a.pad, a.pad};
    const memory::dims& strides = p->strides;
    const memory::dims& pad = p->pad;
    // `any` lets oneDNN choose the blocked layouts its fastest kernels use.
    memory::desc xa({N, Ci, H, W}, dt::f32, tag::any), wa({Co, Ci, kh, kw}, dt::f32, tag::any);
    memory::desc ya({N, Co, Ho, Wo}, dt::f32, tag::any);
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_training,
                                      dnnl::algorithm::convolution_direct, xa, wa,
                                      bias ? p->b_md : memory::desc(), ya, strides, pad, pad);
    p->fwd_pd = dnnl::convolution_forward::primitive_desc(d, engine_);
    p->fwd = dnnl::convolution_forward(p->fwd_pd);
    return *plans_.emplace(key, std::move(p)).first->second;
  }

  void ensure_bwd_data(ConvPlan& p) {
    if (p.bwd_data) return;
    auto xd = p.x_md.dims(), wd = p.w_md.dims(), yd = p.y_md.dims();
    const auto& fd = p.fwd_pd;
    dnnl::convolution_backward_data::desc d(
        dnnl::algorithm::convolution_direct, memory::desc(xd, dt::f32, tag::any),
        memory::desc(wd, dt::f32, tag::any), memory::desc(yd, dt::f32, tag::any),
        p.strides, p.pad, p.pad);
    p.bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(d, engine_, fd);
    p.bwd_data = dnnl::convolution_backward_data(p.bwd_data_pd);
  }

  void ensure_bwd_weights(ConvPlan& p, bool bias) {
    if (p.bwd_w) return;
    auto xd = p.x_md.dims(), wd = p.w_md.dims(), yd = p.y_md.dims();
    const auto& fd = p.fwd_pd;
    dnnl::convolution_backward_weights::desc d(
        dnnl::algorithm::convolution_direct, memory::desc(xd, dt::f32, tag::any),
        memory::desc(wd, dt::f32, tag::any), bias ? p.b_md : memory::desc(),
        memory::desc(yd, dt::f32, tag::any), p.strides, p.pad, p.pad);
    p.bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(d, engine_, fd);
    p.bwd_w = dnnl::convolution_backward_weights(p.bwd_w_pd);
  }

  void remember_input(ConvPlan& p, const Tensor& x) {
    const auto& storage = x.impl()->storage;
    p.x_owner = storage;
    p.x_offset = x.impl()->offset_bytes;
    p.x_version = storage->version;
  }

  bool reordered_input_still_valid(ConvPlan& p, const Tensor& x) {
    if (!p.scratch.count(0) || p.bwd_w_pd.src_desc() != p.fwd_pd.src_desc()) return false;
    const auto owner = p.x_owner.lock();
    return owner && owner == x.impl()->storage && p.x_offset == x.impl()->offset_bytes &&
           p.x_version == owner->version;
  }

  // The user buffer when the primitive wants the plain layout, else a reordered copy.
  memory to_layout(ConvPlan& p, int slot, const memory::desc& user_md, const void* ptr,
                   const memory::desc& want) {
    memory user(user_md, engine_, const_cast<void*>(ptr));
    if (want == user_md) return user;
    memory& s = scratch(p, slot, want);
    dnnl::reorder(user, s).execute(stream_, user, s);
    return s;
  }

  memory scratch_or_user(ConvPlan& p, int slot, const memory::desc& want,
                         const memory::desc& user_md, void* ptr) {
    if (want == user_md) return memory(user_md, engine_, ptr);
    return scratch(p, slot, want);
  }

  void from_layout(const memory& m, const memory::desc& user_md, void* ptr) {
    if (m.get_desc() == user_md && m.get_data_handle() == ptr) return;
    memory user(user_md, engine_, ptr);
    dnnl::reorder(m, user).execute(stream_, const_cast<memory&>(m), user);
  }

  memory& scratch(ConvPlan& p, int slot, const memory::desc& want) {
    auto it = p.scratch.find(slot);
    if (it == p.scratch.end() || it->second.get_desc() != want) {
      p.scratch[slot] = memory(want, engine_);
    }
    return p.scratch[slot];
  }
};

}  // namespace

// ---- backend registry --------------------------------------------------------------------

Backend& backend_for(Device d) {
  if (d == Device::cpu) {
    static CpuBackend cpu;
    return cpu;
  }
#ifdef SIGMAR_CUDA
  return cuda::backend();
#else
  throw std::runtime_error(
      "--device cuda: this sigmar was built without CUDA (rebuild with -Dcuda=enabled on a "
      "machine with the CUDA toolkit), or use --device cpu");
#endif
}

bool cuda_available(std::string* why) {
#ifdef SIGMAR_CUDA
  return cuda::available(why);
#else
  if (why) *why = "built without CUDA";
  return false;
#endif
}

namespace {
bool g_deterministic = false;
}
void set_deterministic(bool on) { g_deterministic = on; }
bool deterministic() { return g_deterministic; }

void set_cpu_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

}  // namespace sigmar
