// Parameter-owning building blocks shared by the models: each holds its tensors, creates
// them with PyTorch's default initialisation (SPEC 1) and calls the differentiable ops.
#pragma once

#include <string>
#include <vector>

#include "engine/module.hpp"
#include "engine/ops.hpp"
#include "engine/rng.hpp"

namespace sigmar::layers {

// Kaiming-uniform with a = √5, PyTorch's default for conv and linear: U(−1/√fan_in, 1/√fan_in)
// for the weight and the bias alike.
Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Rng& rng, Device dev);

struct Conv2d {
  Tensor w, b;  // [Cout,Cin,k,k], [Cout] (undefined when bias is off)
  Conv2dArgs args;
  Conv2d() = default;
  Conv2d(int64_t cin, int64_t cout, int k, int stride, int pad, bool bias, Rng& rng, Device dev);
  Tensor operator()(const Tensor& x) const { return ops::conv2d(x, w, b, args); }
  void collect(const std::string& name, std::vector<NamedTensor>& out) const;
};

struct Linear {
  Tensor w, b;  // [out,in], [out]
  Linear() = default;
  Linear(int64_t in, int64_t out, Rng& rng, Device dev);
  Tensor operator()(const Tensor& x) const { return ops::linear(x, w, b); }
  void collect(const std::string& name, std::vector<NamedTensor>& out) const;
};

struct PReLU {
  Tensor a;  // [C] slopes, 0.25 at start
  PReLU() = default;
  PReLU(int64_t channels, Device dev);
  Tensor operator()(const Tensor& x) const { return ops::prelu(x, a); }
  void collect(const std::string& name, std::vector<NamedTensor>& out) const;
};

struct BatchNorm {
  Tensor gamma, beta, running_mean, running_var;
  BatchNorm() = default;
  BatchNorm(int64_t channels, Device dev);
  Tensor operator()(const Tensor& x, bool training) {
    return ops::batch_norm(x, gamma, beta, running_mean, running_var, training);
  }
  void collect(const std::string& name, std::vector<NamedTensor>& out) const;
  void collect_buffers(const std::string& name, std::vector<NamedTensor>& out) const;
};

}  // namespace sigmar::layers
