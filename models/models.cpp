// The model factory: the one place that maps a model name to its constructor.
#include "models/models.hpp"

#include <stdexcept>

namespace sigmar {

std::unique_ptr<Model> make_lenetpp(const ModelConfig& c, Rng& rng, Device dev);
std::unique_ptr<Model> make_resnet18(const ModelConfig& c, Rng& rng, Device dev);
std::unique_ptr<Model> make_tiny(const ModelConfig& c, Rng& rng, Device dev);

std::unique_ptr<Model> make_model(const ModelConfig& c, Rng& rng, Device dev) {
  if (c.feature_dim < 1 || c.num_classes < 2) {
    throw std::invalid_argument("model: feature width must be >= 1 and classes >= 2");
  }
  if (c.name == "lenetpp") return make_lenetpp(c, rng, dev);
  if (c.name == "resnet18") return make_resnet18(c, rng, dev);
  if (c.name == "tiny") return make_tiny(c, rng, dev);
  throw std::invalid_argument("unknown model '" + c.name + "' (use lenetpp, resnet18 or tiny)");
}

}  // namespace sigmar
