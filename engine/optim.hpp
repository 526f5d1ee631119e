// Optimizers (SPEC 6, PyTorch's semantics) and learning-rate schedules. An optimizer owns
// its per-parameter state (momentum buffers, Adam moments, the step count) and exposes it as
// named tensors for checkpoints. The update itself is a fused kernel on the backend.
#pragma once

#include "engine/backend.hpp"
#include "engine/module.hpp"

#include <memory>
#include <string>
#include <vector>

namespace sigmar {

class Optimizer {
 public:
  explicit Optimizer(std::vector<NamedTensor> params) : params_(std::move(params)) {}
  virtual ~Optimizer() = default;
  // One update of every parameter from its accumulated gradient, at learning rate `lr`.
  virtual void step(float lr) = 0;
  // The per-parameter state a bit-identical continuation needs ("m.conv1.weight", ...);
  // the step count is kept apart so that it stays an exact integer.
  virtual std::vector<NamedTensor> state() = 0;
  int64_t step_count() const { return steps_; }
  void set_step_count(int64_t t) { steps_ = t; }

 protected:
  std::vector<NamedTensor> params_;
  int64_t steps_ = 0;
};

struct OptimizerConfig {
  std::string kind = "adam";  // sgd | adam | adamw
  float momentum = 0.9f;      // SGD
  bool nesterov = false;
  float weight_decay = 0.0f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& cfg,
                                          std::vector<NamedTensor> params);

// Learning rate at optimizer step `step` (0-based) of `total` steps.
struct Schedule {
  std::string kind = "constant";  // constant | step | cosine
  float base_lr = 1e-3f;
  int64_t warmup_steps = 0;       // linear ramp from base_lr/warmup to base_lr
  int64_t step_every = 0;         // "step": multiply by gamma every this many steps
  float gamma = 0.1f;
  float min_lr = 0.0f;            // "cosine": the floor it decays to
  float lr_at(int64_t step, int64_t total) const;
};

}  // namespace sigmar
