// Differentiable ops (see ops.hpp): forward on the backend, a Node for the backward.
#include "engine/ops.hpp"

#include <cmath>
#include <stdexcept>

#include "engine/profile.hpp"

namespace sigmar::profile {
namespace {
bool g_enabled = false;
}
bool enabled() { return g_enabled; }
void enable(bool on) { g_enabled = on; }
std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> t;
  return t;
}
void reset() { table().clear(); }
}  // namespace sigmar::profile

namespace sigmar::ops {

namespace {

bool any_requires_grad(std::initializer_list<const Tensor*> ts) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : ts) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

bool wants(const Tensor& t) { return t.defined() && t.requires_grad(); }

void record(Tensor& out, const char* name, std::vector<Tensor> inputs,
            std::function<std::vector<Tensor>(const Tensor&)> backward) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  out.set_grad_fn(std::move(node));
}

void expect_rank(const Tensor& t, int64_t rank, const char* op, const char* what) {
  if (t.ndim() != rank) {
    throw std::invalid_argument(std::string(op) + ": " + what + " must have " +
                                std::to_string(rank) + " dims, got " + shape_str(t.shape()));
  }
}

void expect_same_device(const Tensor& a, const Tensor& b, const char* op) {
  if (b.defined() && a.device() != b.device()) {
    throw std::invalid_argument(std::string(op) + ": inputs on " + device_name(a.device()) +
                                " and " + device_name(b.device()));
  }
}

// A per-channel vector (bias, γ, β, running statistics): undefined where optional, else [n].
void expect_channels(const Tensor& t, int64_t n, const char* op, const char* what,
                     const char* unit) {
  if (t.defined() && (t.ndim() != 1 || t.dim(0) != n)) {
    throw std::invalid_argument(std::string(op) + ": " + what + " " + shape_str(t.shape()) +
                                " does not match " + std::to_string(n) + " " + unit);
  }
}

// Eval-mode batch norm is affine per channel: y = γ·(x − μ)·s + β, s = 1/√(σ² + eps), with the
// running μ and σ² constants (copied here: a later training step updates them in place).
// dx = γ·s·dy is the same map with μ = β = 0; dγ = Σ dy·x̂ and dβ = Σ dy are what the
// training backward computes when handed μ and s as its saved statistics.
std::function<std::vector<Tensor>(const Tensor&)> batch_norm_eval_backward(
    const Tensor& x, const Tensor& gamma, const Tensor& mean, const Tensor& var, float eps) {
  std::vector<float> s = var.to_vector();
  for (float& v : s) v = 1.0f / std::sqrt(v + eps);
  BatchNormOut saved{Tensor(), mean.clone(), Tensor::from(s, var.shape(), var.device())};
  return [x, gamma, var = var.clone(), saved, eps](const Tensor& dy) {
    Backend& be = backend_of(x);
    Tensor zero = Tensor::zeros(var.shape(), var.device());
    Tensor dx = be.batchnorm_eval(dy, gamma, zero, zero, var, eps);
    BatchNormGrads g = be.batchnorm_backward(x, gamma, saved, dy);
    return std::vector<Tensor>{dx, g.dgamma, g.dbeta};
  };
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, Conv2dArgs args) {
  expect_rank(x, 4, "conv2d", "input");
  expect_rank(w, 4, "conv2d", "weight");
  if (x.dim(1) != w.dim(1)) {
    throw std::invalid_argument("conv2d: input has " + std::to_string(x.dim(1)) +
                                " channels but the weight expects " + std::to_string(w.dim(1)));
  }
  expect_same_device(x, w, "conv2d");
  expect_same_device(x, b, "conv2d");
  expect_channels(b, w.dim(0), "conv2d", "bias", "output channels");
  Tensor y;
  {
    profile::Scope timer("conv2d");
    y = backend_of(x).conv2d_forward(x, w, b, args);
  }
  if (any_requires_grad({&x, &w, &b})) {
    record(y, "conv2d", {x, w, b}, [x, w, b, args](const Tensor& dy) {
      profile::Scope timer("conv2d backward");
      ConvGrads g = backend_of(x).conv2d_backward(x, w, dy, args, wants(x), wants(w), wants(b));
      return std::vector<Tensor>{g.dx, g.dw, g.db};
    });
  }
  return y;
}

Tensor max_pool2d(const Tensor& x, PoolArgs args) {
  expect_rank(x, 4, "max_pool2d", "input");
  if (args.kernel < 1 || args.stride < 1) {
    throw std::invalid_argument("max_pool2d: kernel and stride must be >= 1, got " +
                                std::to_string(args.kernel) + " and " +
                                std::to_string(args.stride));
  }
  Tensor y;
  {
    profile::Scope timer("max_pool2d");
    y = backend_of(x).maxpool_forward(x, args);
  }
  if (any_requires_grad({&x})) {
    record(y, "max_pool2d", {x}, [x, y_data = y.view(y.shape()), args](const Tensor& dy) {
      profile::Scope timer("max_pool2d backward");
      return std::vector<Tensor>{backend_of(x).maxpool_backward(x, y_data, dy, args)};
    });
  }
  return y;
}

Tensor global_avg_pool(const Tensor& x) {
  expect_rank(x, 4, "global_avg_pool", "input");
  Tensor y;
  {
    profile::Scope timer("global_avg_pool");
    y = backend_of(x).global_avgpool_forward(x);
  }
  if (any_requires_grad({&x})) {
    record(y, "global_avg_pool", {x}, [shape = x.shape(), dev = x.device()](const Tensor& dy) {
      return std::vector<Tensor>{backend_for(dev).global_avgpool_backward(dy, shape)};
    });
  }
  return y;
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  expect_rank(x, 2, "linear", "input");
  expect_rank(w, 2, "linear", "weight");
  if (x.dim(1) != w.dim(1)) {
    throw std::invalid_argument("linear: input width " + std::to_string(x.dim(1)) +
                                " does not match weight " + shape_str(w.shape()));
  }
  expect_same_device(x, w, "linear");
  expect_same_device(x, b, "linear");
  expect_channels(b, w.dim(0), "linear", "bias", "outputs");
  Tensor y;
  {
    profile::Scope timer("linear");
    y = backend_of(x).linear_forward(x, w, b);
  }
  if (any_requires_grad({&x, &w, &b})) {
    record(y, "linear", {x, w, b}, [x, w, b](const Tensor& dy) {
      profile::Scope timer("linear backward");
      ConvGrads g = backend_of(x).linear_backward(x, w, dy, wants(x), wants(w), wants(b));
      return std::vector<Tensor>{g.dx, g.dw, g.db};
    });
  }
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y;
  {
    profile::Scope timer("relu");
    y = backend_of(x).relu_forward(x);
  }
  if (any_requires_grad({&x})) {
    record(y, "relu", {x}, [x](const Tensor& dy) {
      profile::Scope timer("relu backward");
      return std::vector<Tensor>{backend_of(x).relu_backward(x, dy)};
    });
  }
  return y;
}

Tensor prelu(const Tensor& x, const Tensor& a) {
  if (x.ndim() < 2) throw std::invalid_argument("prelu: input needs a channel dim");
  if (a.numel() != 1 && a.numel() != x.dim(1)) {
    throw std::invalid_argument("prelu: " + std::to_string(a.numel()) + " slopes for " +
                                std::to_string(x.dim(1)) + " channels");
  }
  Tensor y;
  {
    profile::Scope timer("prelu");
    y = backend_of(x).prelu_forward(x, a);
  }
  if (any_requires_grad({&x, &a})) {
    record(y, "prelu", {x, a}, [x, a](const Tensor& dy) {
      profile::Scope timer("prelu backward");
      ConvGrads g = backend_of(x).prelu_backward(x, a, dy);
      return std::vector<Tensor>{g.dx, g.dw};
    });
  }
  return y;
}

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                  Tensor& running_var, bool training, float momentum, float eps) {
  if (x.ndim() != 2 && x.ndim() != 4) {
    throw std::invalid_argument("batch_norm: input must be [N,C] or [N,C,H,W], got " +
                                shape_str(x.shape()));
  }
  const Tensor* params[] = {&gamma, &beta, &running_mean, &running_var};
  for (const Tensor* t : params) {
    if (!t->defined())
      throw std::invalid_argument(
          "batch_norm: gamma, beta and statistics "
          "are required");
    expect_same_device(x, *t, "batch_norm");
  }
  expect_channels(gamma, x.dim(1), "batch_norm", "gamma", "channels");
  expect_channels(beta, x.dim(1), "batch_norm", "beta", "channels");
  expect_channels(running_mean, x.dim(1), "batch_norm", "running_mean", "channels");
  expect_channels(running_var, x.dim(1), "batch_norm", "running_var", "channels");
  Backend& be = backend_of(x);
  if (!training) {
    Tensor y = be.batchnorm_eval(x, gamma, beta, running_mean, running_var, eps);
    if (any_requires_grad({&x, &gamma, &beta})) {
      record(y, "batch_norm_eval", {x, gamma, beta},
             batch_norm_eval_backward(x, gamma, running_mean, running_var, eps));
    }
    return y;
  }
  BatchNormOut out = be.batchnorm_train(x, gamma, beta, running_mean, running_var, momentum, eps);
  Tensor y = out.y;
  if (any_requires_grad({&x, &gamma, &beta})) {
    out.y = Tensor();  // the closure must not keep its own output alive
    record(y, "batch_norm", {x, gamma, beta}, [x, gamma, out](const Tensor& dy) {
      BatchNormGrads g = backend_of(x).batchnorm_backward(x, gamma, out, dy);
      return std::vector<Tensor>{g.dx, g.dgamma, g.dbeta};
    });
  }
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) {
    throw std::invalid_argument("add: shapes " + shape_str(a.shape()) + " and " +
                                shape_str(b.shape()));
  }
  Tensor y = backend_of(a).add(a, b);
  if (any_requires_grad({&a, &b})) {
    record(y, "add", {a, b}, [](const Tensor& dy) { return std::vector<Tensor>{dy, dy}; });
  }
  return y;
}

Tensor add_scaled(const Tensor& a, const Tensor& b, float s) {
  if (a.shape() != b.shape()) {
    throw std::invalid_argument("add_scaled: shapes " + shape_str(a.shape()) + " and " +
                                shape_str(b.shape()));
  }
  Tensor y = backend_of(a).add_scaled(a, b, s);
  if (any_requires_grad({&a, &b})) {
    record(y, "add_scaled", {a, b}, [s](const Tensor& dy) {
      Tensor zero = Tensor::zeros(dy.shape(), dy.device());
      return std::vector<Tensor>{dy, backend_of(dy).add_scaled(zero, dy, s)};
    });
  }
  return y;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor y = x.view(shape);
  if (any_requires_grad({&x})) {
    record(y, "reshape", {x}, [in_shape = x.shape()](const Tensor& dy) {
      return std::vector<Tensor>{dy.view(in_shape)};
    });
  }
  return y;
}

Tensor flatten(const Tensor& x) {
  if (x.ndim() < 1) throw std::invalid_argument("flatten: needs a batch dim");
  return reshape(x, {x.dim(0), x.numel() / std::max<int64_t>(x.dim(0), 1)});
}

Tensor fused_loss(const char* name, const LossOut& out, const Tensor& input) {
  Tensor loss = out.loss;
  if (any_requires_grad({&input})) {
    record(loss, name, {input}, [grad = out.grad](const Tensor& dloss) {
      return std::vector<Tensor>{backend_of(grad).scale_by(grad, dloss)};
    });
  }
  return loss;
}

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels) {
  expect_rank(logits, 2, "softmax_cross_entropy", "logits");
  if (labels.dtype() != DType::i32 || labels.ndim() != 1 || labels.dim(0) != logits.dim(0)) {
    throw std::invalid_argument("softmax_cross_entropy: labels must be int32 [" +
                                std::to_string(logits.dim(0)) + "], got " +
                                dtype_name(labels.dtype()) + " " + shape_str(labels.shape()));
  }
  return fused_loss("softmax_ce", backend_of(logits).softmax_ce(logits, labels), logits);
}

float item(const Tensor& t) {
  if (t.numel() != 1) throw std::invalid_argument("item: tensor of shape " + shape_str(t.shape()));
  return t.to_vector()[0];
}

}  // namespace sigmar::ops
