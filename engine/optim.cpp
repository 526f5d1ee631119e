// SGD and Adam/AdamW over a list of parameters, and the learning-rate schedules.
#include "engine/optim.hpp"

#include "engine/profile.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace sigmar {

namespace {

// Parameters that no backward pass reached have no gradient yet: they count as zero.
Tensor grad_or_zero(const Tensor& p) {
  Tensor g = p.grad();
  return g.defined() ? g : Tensor::zeros(p.shape(), p.device());
}

class Sgd final : public Optimizer {
 public:
  Sgd(std::vector<NamedTensor> params, SgdSettings s) : Optimizer(std::move(params)), s_(s) {
    for (auto& p : params_) buf_.push_back(Tensor::zeros(p.tensor.shape(), p.tensor.device()));
  }
  void step(float lr) override {
    NoGradGuard no_grad;
    profile::Scope timer("optimizer");
    SgdSettings s = s_;
    s.lr = lr;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor& w = params_[i].tensor;
      backend_of(w).sgd_step(w, grad_or_zero(w), buf_[i], s);
    }
    ++steps_;
  }
  std::vector<NamedTensor> state() override {
    std::vector<NamedTensor> out;
    for (size_t i = 0; i < params_.size(); ++i) {
      out.push_back({"momentum." + params_[i].name, buf_[i]});
    }
    return out;
  }

 private:
  SgdSettings s_;
  std::vector<Tensor> buf_;
};

class Adam final : public Optimizer {
 public:
  Adam(std::vector<NamedTensor> params, AdamSettings s) : Optimizer(std::move(params)), s_(s) {
    for (auto& p : params_) {
      m_.push_back(Tensor::zeros(p.tensor.shape(), p.tensor.device()));
      v_.push_back(Tensor::zeros(p.tensor.shape(), p.tensor.device()));
    }
  }
  void step(float lr) override {
    NoGradGuard no_grad;
    profile::Scope timer("optimizer");
    AdamSettings s = s_;
    s.lr = lr;
    ++steps_;  // bias correction counts steps from 1 (SPEC 6)
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor& w = params_[i].tensor;
      backend_of(w).adam_step(w, grad_or_zero(w), m_[i], v_[i], steps_, s);
    }
  }
  std::vector<NamedTensor> state() override {
    std::vector<NamedTensor> out;
    for (size_t i = 0; i < params_.size(); ++i) {
      out.push_back({"adam_m." + params_[i].name, m_[i]});
      out.push_back({"adam_v." + params_[i].name, v_[i]});
    }
    return out;
  }

 private:
  AdamSettings s_;
  std::vector<Tensor> m_, v_;
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
