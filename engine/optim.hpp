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

// The optimizer packs every parameter, its gradient and its state into flat buffers (the
// parameters keep their shapes as views), so one fused update and one zeroing cover the whole
// model: one kernel launch per step on the GPU, one parallel loop on the CPU.
class Optimizer {
 public:
  explicit Optimizer(std::vector<NamedTensor> params);
  virtual ~Optimizer() = default;
  // One update of every parameter from its accumulated gradient, at learning rate `lr`.
  virtual void step(float lr) = 0;
  // Zeroes every parameter's gradient (one fill of the flat gradient buffer).
  void zero_grad();
  // The per-parameter state a bit-identical continuation needs ("adam_m.conv1.weight", ...)
  // as views into the flat state; the step count is kept apart, an exact integer.
  virtual std::vector<NamedTensor> state() = 0;
  int64_t step_count() const { return steps_; }
  void set_step_count(int64_t t) { steps_ = t; }

 protected:
  std::vector<NamedTensor> params_;
  std::vector<int64_t> offsets_;  // where each parameter starts in the flat buffers
  Tensor flat_w_, flat_g_;        // [total] parameters and gradients
  int64_t steps_ = 0;
  // Views of a flat state buffer, one per parameter, named prefix + parameter name.
  std::vector<NamedTensor> views(const std::string& prefix, const Tensor& flat) const;
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
