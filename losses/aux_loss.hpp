// The feature-space losses added to cross-entropy: L = CE + λ·L_aux (SPEC 2). Each is one
// fused forward+backward kernel on the backend, plus state (centers, class variances) that
// the trainer moves by SPEC's rule after each optimizer step, never through the optimizer.
#pragma once

#include "engine/backend.hpp"
#include "engine/module.hpp"

#include <memory>
#include <string>
#include <vector>

namespace sigmar {

struct AuxLossConfig {
  std::string kind = "none";        // none | center | snnl | s2r
  float alpha = 0.5f;               // state update rate (center, s2r)
  float temperature = 1.0f;         // SNNL's T
  float slope = 1.0f;               // σ²R's k
  bool detached = false;            // σ²R's weight_grad = detached
};

class AuxLoss {
 public:
  virtual ~AuxLoss() = default;
  virtual std::string name() const = 0;
  // The mean loss over the batch as a graph node on `features` [B,D] (labels int32 [B]).
  virtual Tensor forward(const Tensor& features, const Tensor& labels) = 0;
  // Moves the state with the batch the last forward saw (call after the optimizer step).
  virtual void update(const Tensor& /*features*/, const Tensor& /*labels*/) {}
  // The state a checkpoint stores and restores in place.
  virtual std::vector<NamedTensor> state() { return {}; }
};

// Returns null for kind "none".
std::unique_ptr<AuxLoss> make_aux_loss(const AuxLossConfig& cfg, int64_t num_classes,
                                       int64_t feature_dim, Device dev);

}  // namespace sigmar
