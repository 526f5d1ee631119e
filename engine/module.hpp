// Named parameters and buffers: what a model or a loss owns, what the optimizer updates and
// what a checkpoint stores. Names are dotted paths ("conv1.weight", "bn1.running_var").
#pragma once

#include "engine/tensor.hpp"

#include <string>
#include <vector>

namespace sigmar {

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

// A model: a forward pass that returns the features feeding the classifier and the logits.
struct ModelOutput {
  Tensor features;  // [B, D]
  Tensor logits;    // [B, C]
};

class Model {
 public:
  virtual ~Model() = default;
  virtual std::string name() const = 0;
  virtual ModelOutput forward(const Tensor& x, bool training) = 0;
  // Trainable tensors (requires_grad set).
  virtual std::vector<NamedTensor> parameters() = 0;
  // Non-trainable state that a checkpoint must hold (batch-norm running statistics).
  virtual std::vector<NamedTensor> buffers() { return {}; }

  int64_t parameter_count() {
    int64_t n = 0;
    for (auto& p : parameters()) n += p.tensor.numel();
    return n;
  }
  void zero_grad() {
    for (auto& p : parameters()) p.tensor.zero_grad();
  }
};

}  // namespace sigmar
