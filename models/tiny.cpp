// A small network for fast tests (see Tiny below).
#include "models/layers.hpp"
#include "models/models.hpp"

namespace sigmar {

namespace {

// A small net with every kind of state (conv, batch norm, PReLU, pool, linear) for fast tests
// of training, checkpoints and resume.
class Tiny final : public Model {
 public:
  Tiny(const ModelConfig& c, Rng& rng, Device dev)
      : conv_(c.in_channels, 4, 3, 1, 1, true, rng, dev),
        bn_(4, dev),
        fc_(4 * (c.image_size / 2) * (c.image_size / 2), c.feature_dim, rng, dev),
        act_(1, dev),
        classifier_(c.feature_dim, c.num_classes, rng, dev) {}

  std::string name() const override { return "tiny"; }

  ModelOutput forward(const Tensor& input, bool training) override {
    Tensor x = ops::relu(bn_(conv_(input), training));
    x = ops::max_pool2d(x, {2, 2});
    Tensor features = act_(fc_(ops::flatten(x)));
    return {features, classifier_(features)};
  }

  std::vector<NamedTensor> parameters() override {
    std::vector<NamedTensor> p;
    conv_.collect("conv", p);
    bn_.collect("bn", p);
    fc_.collect("fc", p);
    act_.collect("fc_prelu", p);
    classifier_.collect("classifier", p);
    return p;
  }
  std::vector<NamedTensor> buffers() override {
    std::vector<NamedTensor> b;
    bn_.collect_buffers("bn", b);
    return b;
  }

 private:
  layers::Conv2d conv_;
  layers::BatchNorm bn_;
  layers::Linear fc_;
  layers::PReLU act_;
  layers::Linear classifier_;
};

}  // namespace

std::unique_ptr<Model> make_tiny(const ModelConfig& c, Rng& rng, Device dev) {
  return std::make_unique<Tiny>(c, rng, dev);
}

}  // namespace sigmar
