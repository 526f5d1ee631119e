// LeNet++ (SPEC 5), the network of the center-loss paper: three stages of two 5×5
// convolutions (padding 2) with PReLU, each stage closed by a 2×2 max-pool, widths 32, 64,
// 128; a linear layer to D features with PReLU; a linear classifier to C classes.
#include "models/layers.hpp"
#include "models/models.hpp"

#include <array>

namespace sigmar {

namespace {

class LeNetPP final : public Model {
 public:
  LeNetPP(const ModelConfig& c, Rng& rng, Device dev) {
    const std::array<int64_t, 4> width{c.in_channels, 32, 64, 128};
    for (int s = 0; s < 3; ++s) {
      convs_[2 * s] = layers::Conv2d(width[s], width[s + 1], 5, 1, 2, true, rng, dev);
      acts_[2 * s] = layers::PReLU(width[s + 1], dev);
      convs_[2 * s + 1] = layers::Conv2d(width[s + 1], width[s + 1], 5, 1, 2, true, rng, dev);
      acts_[2 * s + 1] = layers::PReLU(width[s + 1], dev);
    }
    int64_t side = c.image_size;
    for (int s = 0; s < 3; ++s) side /= 2;  // three 2×2 pools, floor each time
    fc_ = layers::Linear(128 * side * side, c.feature_dim, rng, dev);
    fc_act_ = layers::PReLU(1, dev);
    classifier_ = layers::Linear(c.feature_dim, c.num_classes, rng, dev);
  }

  std::string name() const override { return "lenetpp"; }

  ModelOutput forward(const Tensor& input, bool) override {
    Tensor x = input;
    for (int s = 0; s < 3; ++s) {
      x = acts_[2 * s](convs_[2 * s](x));
      x = acts_[2 * s + 1](convs_[2 * s + 1](x));
      x = ops::max_pool2d(x, {2, 2});
    }
    Tensor features = fc_act_(fc_(ops::flatten(x)));
    return {features, classifier_(features)};
  }

  std::vector<NamedTensor> parameters() override {
    std::vector<NamedTensor> out;
    for (int i = 0; i < 6; ++i) {
      const std::string n = std::to_string(i + 1);
      convs_[i].collect("conv" + n, out);
      acts_[i].collect("prelu" + n, out);
    }
    fc_.collect("fc", out);
    fc_act_.collect("fc_prelu", out);
    classifier_.collect("classifier", out);
    return out;
  }

 private:
  std::array<layers::Conv2d, 6> convs_;
  std::array<layers::PReLU, 6> acts_;
  layers::Linear fc_, classifier_;
  layers::PReLU fc_act_;
};

}  // namespace

std::unique_ptr<Model> make_lenetpp(const ModelConfig& c, Rng& rng, Device dev) {
  return std::make_unique<LeNetPP>(c, rng, dev);
}

}  // namespace sigmar
