// ResNet-18, CIFAR variant (SPEC 5): a 3×3 stem without pooling, four stages of two basic
// blocks (64, 128, 256, 512 channels, stride 2 from the second stage on, a 1×1 convolution
// with batch norm on the shortcut where the shape changes), global average pooling to 512
// features, a linear classifier.
#include "models/layers.hpp"
#include "models/models.hpp"

namespace sigmar {

namespace {

struct BasicBlock {
  layers::Conv2d conv1, conv2, shortcut;
  layers::BatchNorm bn1, bn2, bn_shortcut;
  bool projected = false;

  BasicBlock(int64_t cin, int64_t cout, int stride, Rng& rng, Device dev)
      : conv1(cin, cout, 3, stride, 1, false, rng, dev),
        conv2(cout, cout, 3, 1, 1, false, rng, dev),
        bn1(cout, dev),
        bn2(cout, dev),
        projected(stride != 1 || cin != cout) {
    if (projected) {
      shortcut = layers::Conv2d(cin, cout, 1, stride, 0, false, rng, dev);
      bn_shortcut = layers::BatchNorm(cout, dev);
    }
  }

  Tensor operator()(const Tensor& x, bool training) {
    Tensor y = ops::relu(bn1(conv1(x), training));
    y = bn2(conv2(y), training);
    Tensor skip = projected ? bn_shortcut(shortcut(x), training) : x;
    return ops::relu(ops::add(y, skip));
  }

  void collect(const std::string& n, std::vector<NamedTensor>& p,
               std::vector<NamedTensor>& b) const {
    conv1.collect(n + ".conv1", p);
    bn1.collect(n + ".bn1", p);
    bn1.collect_buffers(n + ".bn1", b);
    conv2.collect(n + ".conv2", p);
    bn2.collect(n + ".bn2", p);
    bn2.collect_buffers(n + ".bn2", b);
    if (projected) {
      shortcut.collect(n + ".shortcut", p);
      bn_shortcut.collect(n + ".bn_shortcut", p);
      bn_shortcut.collect_buffers(n + ".bn_shortcut", b);
    }
  }
};

class ResNet18 final : public Model {
 public:
  ResNet18(const ModelConfig& c, Rng& rng, Device dev)
      : stem_(c.in_channels, 64, 3, 1, 1, false, rng, dev), stem_bn_(64, dev) {
    int64_t cin = 64;
    for (int64_t width : {64, 128, 256, 512}) {
      const int stride = width == 64 ? 1 : 2;
      blocks_.emplace_back(cin, width, stride, rng, dev);
      blocks_.emplace_back(width, width, 1, rng, dev);
      cin = width;
    }
    classifier_ = layers::Linear(512, c.num_classes, rng, dev);
  }

  std::string name() const override { return "resnet18"; }

  ModelOutput forward(const Tensor& input, bool training) override {
    Tensor x = ops::relu(stem_bn_(stem_(input), training));
    for (auto& block : blocks_) x = block(x, training);
    Tensor features = ops::global_avg_pool(x);
    return {features, classifier_(features)};
  }

  std::vector<NamedTensor> parameters() override {
    std::vector<NamedTensor> p, b;
    collect(p, b);
    return p;
  }
  std::vector<NamedTensor> buffers() override {
    std::vector<NamedTensor> p, b;
    collect(p, b);
    return b;
  }

 private:
  layers::Conv2d stem_;
  layers::BatchNorm stem_bn_;
  std::vector<BasicBlock> blocks_;
  layers::Linear classifier_;

  void collect(std::vector<NamedTensor>& p, std::vector<NamedTensor>& b) {
    stem_.collect("stem", p);
    stem_bn_.collect("stem_bn", p);
    stem_bn_.collect_buffers("stem_bn", b);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      blocks_[i].collect("block" + std::to_string(i + 1), p, b);
    }
    classifier_.collect("classifier", p);
  }
};

}  // namespace

std::unique_ptr<Model> make_resnet18(const ModelConfig& c, Rng& rng, Device dev) {
  return std::make_unique<ResNet18>(c, rng, dev);
}

}  // namespace sigmar
