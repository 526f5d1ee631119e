// Building blocks of the models (see layers.hpp).
#include "models/layers.hpp"

#include <cmath>

namespace sigmar::layers {

Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Rng& rng, Device dev) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  Tensor t = Tensor::empty(shape, Device::cpu);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform(-bound, bound);
  Tensor out = t.to(dev);
  out.set_requires_grad(true);
  return out;
}

Conv2d::Conv2d(int64_t cin, int64_t cout, int k, int stride, int pad, bool bias, Rng& rng,
               Device dev)
    : args{stride, pad} {
  const int64_t fan_in = cin * k * k;
  w = kaiming_uniform({cout, cin, k, k}, fan_in, rng, dev);
  if (bias) b = kaiming_uniform({cout}, fan_in, rng, dev);
}

void Conv2d::collect(const std::string& name, std::vector<NamedTensor>& out) const {
  out.push_back({name + ".weight", w});
  if (b.defined()) out.push_back({name + ".bias", b});
}

Linear::Linear(int64_t in, int64_t out, Rng& rng, Device dev) {
  w = kaiming_uniform({out, in}, in, rng, dev);
  b = kaiming_uniform({out}, in, rng, dev);
}

void Linear::collect(const std::string& name, std::vector<NamedTensor>& out) const {
  out.push_back({name + ".weight", w});
  out.push_back({name + ".bias", b});
}

PReLU::PReLU(int64_t channels, Device dev) {
  a = Tensor::full({channels}, 0.25f, dev);
  a.set_requires_grad(true);
}

void PReLU::collect(const std::string& name, std::vector<NamedTensor>& out) const {
  out.push_back({name + ".slope", a});
}

BatchNorm::BatchNorm(int64_t channels, Device dev) {
  gamma = Tensor::full({channels}, 1.0f, dev);
  gamma.set_requires_grad(true);
  beta = Tensor::zeros({channels}, dev);
  beta.set_requires_grad(true);
  running_mean = Tensor::zeros({channels}, dev);
  running_var = Tensor::full({channels}, 1.0f, dev);
}

void BatchNorm::collect(const std::string& name, std::vector<NamedTensor>& out) const {
  out.push_back({name + ".weight", gamma});
  out.push_back({name + ".bias", beta});
}

void BatchNorm::collect_buffers(const std::string& name, std::vector<NamedTensor>& out) const {
  out.push_back({name + ".running_mean", running_mean});
  out.push_back({name + ".running_var", running_var});
}

}  // namespace sigmar::layers
