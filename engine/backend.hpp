// The backend seam. Every numeric op the engine runs goes through one of these virtual calls,
// so models, losses and the trainer never know whether oneDNN on the CPU or cuDNN/cuBLAS and
// our kernels on the GPU did the work. Each call returns freshly allocated tensors on the
// backend's device; gradients are returned, never accumulated here (autograd adds them).
//
// Shapes use the SPEC 1 conventions: images NCHW, conv weight [Cout, Cin, kH, kW], linear
// weight [out, in] with y = x·Wᵀ + b, labels int32 [B].
#pragma once

#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace sigmar {

struct Conv2dArgs {
  int stride = 1;
  int pad = 0;
};

struct PoolArgs {
  int kernel = 2;
  int stride = 2;
};

struct ConvGrads {
  Tensor dx, dw, db;  // each undefined when not asked for
};

struct BatchNormOut {
  Tensor y;
  Tensor mean;    // [C] batch mean (saved for backward)
  Tensor invstd;  // [C] 1/sqrt(biased batch var + eps)
};

struct BatchNormGrads {
  Tensor dx, dgamma, dbeta;
};

struct LossOut {
  Tensor loss;  // [1]: the mean loss (SPEC 1)
  Tensor grad;  // same shape as the differentiated input: d loss / d input
};

// Settings of σ²R that are not state (SPEC 2.4).
struct S2RSettings {
  float slope = 1.0f;     // k
  bool detached = false;  // weight_grad = detached drops the d·∂w/∂d term
  float eps = 1e-6f;
};

struct SgdSettings {
  float lr = 0.01f, momentum = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
};

struct AdamSettings {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  bool decoupled = false;  // AdamW
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string describe() const = 0;  // library versions, device name

  // ---- convolution (cuDNN / oneDNN): x [N,Cin,H,W], w [Cout,Cin,kH,kW], b [Cout] or undefined
  virtual Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b,
                                Conv2dArgs args) = 0;
  virtual ConvGrads conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                    Conv2dArgs args, bool need_dx, bool need_dw, bool need_db) = 0;

  // ---- max pooling: first maximum in row-major window order takes the gradient (SPEC 1)
  virtual Tensor maxpool_forward(const Tensor& x, PoolArgs args) = 0;
  virtual Tensor maxpool_backward(const Tensor& x, const Tensor& y, const Tensor& dy,
                                  PoolArgs args) = 0;

  // ---- global average pool: [N,C,H,W] -> [N,C]
  virtual Tensor global_avgpool_forward(const Tensor& x) = 0;
  virtual Tensor global_avgpool_backward(const Tensor& dy, const Shape& x_shape) = 0;

  // ---- linear: x [N,in], w [out,in], b [out] or undefined -> [N,out]
  virtual Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& b) = 0;
  virtual ConvGrads linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy,
                                    bool need_dx, bool need_dw, bool need_db) = 0;

  // ---- activations; PReLU slope a has C entries (channel dim 1) or a single entry
  virtual Tensor relu_forward(const Tensor& x) = 0;
  virtual Tensor relu_backward(const Tensor& x, const Tensor& dy) = 0;
  virtual Tensor prelu_forward(const Tensor& x, const Tensor& a) = 0;
  virtual ConvGrads prelu_backward(const Tensor& x, const Tensor& a,
                                   const Tensor& dy) = 0;  // dx, dw=da

  // ---- batch norm over channel dim 1 of [N,C] or [N,C,H,W] (SPEC 1 statistics)
  virtual BatchNormOut batchnorm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                       Tensor& running_mean, Tensor& running_var, float momentum,
                                       float eps) = 0;
  virtual Tensor batchnorm_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                const Tensor& running_mean, const Tensor& running_var,
                                float eps) = 0;
  virtual BatchNormGrads batchnorm_backward(const Tensor& x, const Tensor& gamma,
                                            const BatchNormOut& saved, const Tensor& dy) = 0;

  // ---- elementwise
  virtual Tensor add(const Tensor& a, const Tensor& b) = 0;
  virtual Tensor add_scaled(const Tensor& a, const Tensor& b, float s) = 0;  // a + s·b
  // x · s[0], with s a one-element tensor on this device (a gradient flowing into a loss)
  virtual Tensor scale_by(const Tensor& x, const Tensor& s) = 0;
  virtual void add_inplace(Tensor& dst, const Tensor& src) = 0;  // dst += src
  virtual void fill(Tensor& dst, float value) = 0;

  // ---- fused losses: one pass writes the mean loss and its gradient.
  // Labels are checked before any kernel reads them (an error names the bad label).
  virtual LossOut softmax_ce(const Tensor& logits, const Tensor& labels) = 0;
  virtual LossOut center_loss(const Tensor& x, const Tensor& labels, const Tensor& centers) = 0;
  virtual void center_update(const Tensor& x, const Tensor& labels, Tensor& centers,
                             float alpha) = 0;
  virtual LossOut snnl(const Tensor& x, const Tensor& labels, float temperature) = 0;
  virtual LossOut s2r_loss(const Tensor& x, const Tensor& labels, const Tensor& centers,
                           const Tensor& variances, S2RSettings s) = 0;
  virtual void s2r_update(const Tensor& x, const Tensor& labels, Tensor& centers, Tensor& variances,
                          float alpha) = 0;

  // ---- optimizer updates, in place on one parameter tensor and its state
  virtual void sgd_step(Tensor& w, const Tensor& g, Tensor& momentum_buf, SgdSettings s) = 0;
  virtual void adam_step(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, int64_t step,
                         AdamSettings s) = 0;

  // ---- data: rows `indices` [B] (i32) of a u8 image set [N,C,H,W] on this device, scaled to
  // [0,1] and normalised per channel: ((p/255) - mean[c]) / stddev[c] -> f32 [B,C,H,W]
  virtual Tensor gather_normalize(const Tensor& images_u8, const Tensor& indices,
                                  const std::vector<float>& mean,
                                  const std::vector<float>& stddev) = 0;
};

// The backend that owns tensors on `device`. Throws when `device` is cuda and no GPU answers.
Backend& backend_for(Device device);
inline Backend& backend_of(const Tensor& t) { return backend_for(t.device()); }

// True when this build has CUDA and a GPU answers; `why` says why not otherwise.
bool cuda_available(std::string* why = nullptr);

// Deterministic mode: cuDNN picks only deterministic algorithms; our kernels are always so.
void set_deterministic(bool on);
bool deterministic();

// Thread count for the CPU backend (OpenMP and oneDNN).
void set_cpu_threads(int n);

}  // namespace sigmar
