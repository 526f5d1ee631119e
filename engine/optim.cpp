// SGD and Adam/AdamW over a list of parameters, and the learning-rate schedules.
#include "engine/optim.hpp"

#include "engine/profile.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace sigmar {

Optimizer::Optimizer(std::vector<NamedTensor> params) : params_(std::move(params)) {
  if (params_.empty()) throw std::invalid_argument("optimizer: no parameters to train");
  const Device dev = params_[0].tensor.device();
  int64_t total = 0;
  for (auto& p : params_) {
    offsets_.push_back(total);
    total += p.tensor.numel();
  }
  flat_w_ = Tensor::empty({total}, dev);
  flat_g_ = Tensor::zeros({total}, dev);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& w = params_[i].tensor;
    w.move_into(flat_w_.view_at(offsets_[i], w.shape()));
    w.set_grad(flat_g_.view_at(offsets_[i], w.shape()));
  }
}

void Optimizer::zero_grad() { flat_g_.fill(0.0f); }

std::vector<NamedTensor> Optimizer::views(const std::string& prefix, const Tensor& flat) const {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.push_back({prefix + params_[i].name,
                   flat.view_at(offsets_[i], params_[i].tensor.shape())});
  }
  return out;
}

namespace {

class Sgd final : public Optimizer {
 public:
  Sgd(std::vector<NamedTensor> params, SgdSettings s)
      : Optimizer(std::move(params)), s_(s), buf_(Tensor::zeros(flat_w_.shape(),
                                                                flat_w_.device())) {}
  void step(float lr) override {
    NoGradGuard no_grad;
    profile::Scope timer("optimizer");
    SgdSettings s = s_;
    s.lr = lr;
    backend_of(flat_w_).sgd_step(flat_w_, flat_g_, buf_, s);
    ++steps_;
  }
  std::vector<NamedTensor> state() override { return views("momentum.", buf_); }

 private:
  SgdSettings s_;
  Tensor buf_;  // momentum, flat
};

class Adam final : public Optimizer {
 public:
  Adam(std::vector<NamedTensor> params, AdamSettings s)
      : Optimizer(std::move(params)),
        s_(s),
        m_(Tensor::zeros(flat_w_.shape(), flat_w_.device())),
        v_(Tensor::zeros(flat_w_.shape(), flat_w_.device())) {}
  void step(float lr) override {
    NoGradGuard no_grad;
    profile::Scope timer("optimizer");
    AdamSettings s = s_;
    s.lr = lr;
    ++steps_;  // bias correction counts steps from 1 (SPEC 6)
    backend_of(flat_w_).adam_step(flat_w_, flat_g_, m_, v_, steps_, s);
  }
  std::vector<NamedTensor> state() override {
    std::vector<NamedTensor> out = views("adam_m.", m_);
    for (auto& v : views("adam_v.", v_)) out.push_back(v);
    return out;
  }

 private:
  AdamSettings s_;
  Tensor m_, v_;  // first and second moments, flat
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& c,
                                          std::vector<NamedTensor> params) {
  if (c.kind == "sgd") {
    return std::make_unique<Sgd>(std::move(params),
                                 SgdSettings{0.0f, c.momentum, c.weight_decay, c.nesterov});
  }
  if (c.kind == "adam" || c.kind == "adamw") {
    AdamSettings s{0.0f, c.beta1, c.beta2, c.eps, c.weight_decay, c.kind == "adamw"};
    return std::make_unique<Adam>(std::move(params), s);
  }
  throw std::invalid_argument("unknown optimizer '" + c.kind + "' (use sgd, adam or adamw)");
}

float Schedule::lr_at(int64_t step, int64_t total) const {
  if (warmup_steps > 0 && step < warmup_steps) {
    return base_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
  }
  if (kind == "constant") return base_lr;
  if (kind == "step") {
    if (step_every <= 0) return base_lr;
    return base_lr * std::pow(gamma, static_cast<float>((step - warmup_steps) / step_every));
  }
  if (kind == "cosine") {
    const double span = std::max<int64_t>(total - warmup_steps, 1);
    const double t = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
    return static_cast<float>(min_lr + (base_lr - min_lr) * 0.5 *
                                           (1.0 + std::cos(std::numbers::pi * t)));
  }
  throw std::invalid_argument("unknown schedule '" + kind + "' (use constant, step or cosine)");
}

}  // namespace sigmar
