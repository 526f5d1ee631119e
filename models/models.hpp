// The networks sigmar trains (SPEC 5) and the factory the trainer calls.
#pragma once

#include "engine/module.hpp"
#include "engine/rng.hpp"

#include <memory>
#include <string>

namespace sigmar {

struct ModelConfig {
  std::string name = "lenetpp";  // lenetpp | resnet18 | tiny
  int64_t in_channels = 1;
  int64_t image_size = 28;
  int64_t feature_dim = 2;       // LeNet++'s feature width D (ResNet-18's is 512)
  int64_t num_classes = 10;
};

// Builds and initialises the model from `rng` (the run's one generator).
std::unique_ptr<Model> make_model(const ModelConfig& cfg, Rng& rng, Device dev);

}  // namespace sigmar
