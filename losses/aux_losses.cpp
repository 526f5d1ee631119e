// The three feature-space losses as objects with their state (SPEC 2.2-2.4). Each forward
// is one fused kernel call on the backend; the state moves by SPEC's rule in update().

#include "engine/ops.hpp"
#include "kernels/kernels.hpp"
#include "losses/aux_loss.hpp"

namespace sigmar {

namespace {

// Center loss (SPEC 2.2, Wen et al. 2016): pulls each feature towards its class center;
// the centers follow the batch by the paper's rule with rate α.
class CenterLoss final : public AuxLoss {
 public:
  CenterLoss(const AuxLossConfig& c, int64_t classes, int64_t dim, Device dev)
      : alpha_(c.alpha), centers_(Tensor::zeros({classes, dim}, dev)) {}

  std::string name() const override { return "center"; }

  Tensor forward(const Tensor& x, const Tensor& labels) override {
    return ops::fused_loss("center_loss", backend_of(x).center_loss(x, labels, centers_), x);
  }

  void update(const Tensor& x, const Tensor& labels) override {
    backend_of(x).center_update(x, labels, centers_, alpha_);
  }

  std::vector<NamedTensor> state() override { return {{"centers", centers_}}; }

 private:
  float alpha_;
  Tensor centers_;  // [C, D]
};

// Soft nearest neighbour loss (SPEC 2.3, Frosst et al. 2019): stateless.
class SoftNearestNeighbourLoss final : public AuxLoss {
 public:
  SoftNearestNeighbourLoss(const AuxLossConfig& c, int64_t classes)
      : temperature_(c.temperature), classes_(classes) {}
  std::string name() const override { return "snnl"; }
  Tensor forward(const Tensor& x, const Tensor& labels) override {
    // The kernel needs no class count, so it cannot see a label ≥ C; the loss knows C and
    // checks here, before any kernel reads the labels (CASES 5).
    if (labels.device() == Device::cpu) {
      kernels::check_labels(labels.data_i32(), labels.numel(), classes_, "snnl loss");
    } else {
      std::vector<int32_t> host = labels.to_vector_i32();
      kernels::check_labels(host.data(), labels.numel(), classes_, "snnl loss");
    }
    return ops::fused_loss("snnl", backend_of(x).snnl(x, labels, temperature_), x);
  }

 private:
  float temperature_;
  int64_t classes_;
};

// σ²R (SPEC 2.4): the center error of each sample scaled by a sigmoid of how far it lies
// above its class variance; centers and variances follow the batch by the center rule.
class SigmaSquaredReduction final : public AuxLoss {
 public:
  SigmaSquaredReduction(const AuxLossConfig& c, int64_t classes, int64_t dim, Device dev)
      : alpha_(c.alpha),
        settings_{c.slope, c.detached, 1e-6f},
        centers_(Tensor::zeros({classes, dim}, dev)),
        variances_(Tensor::zeros({classes}, dev)) {}

  std::string name() const override { return "s2r"; }

  Tensor forward(const Tensor& x, const Tensor& labels) override {
    return ops::fused_loss(
        "s2r", backend_of(x).s2r_loss(x, labels, centers_, variances_, settings_), x);
  }

  void update(const Tensor& x, const Tensor& labels) override {
    backend_of(x).s2r_update(x, labels, centers_, variances_, alpha_);
  }

  std::vector<NamedTensor> state() override {
    return {{"centers", centers_}, {"variances", variances_}};
  }

 private:
  float alpha_;
  S2RSettings settings_;
  Tensor centers_;    // [C, D]
  Tensor variances_;  // [C]
};

}  // namespace

std::unique_ptr<AuxLoss> make_aux_loss(const AuxLossConfig& c, int64_t classes, int64_t dim,
                                       Device dev) {
  if (c.kind == "none" || c.kind == "ce") return nullptr;
  if (c.kind == "center" || c.kind == "s2r") {
    if (!(c.alpha > 0.0f && c.alpha <= 1.0f)) {
      throw std::invalid_argument("--alpha must lie in (0, 1], got " + std::to_string(c.alpha));
    }
  }
  if (c.kind == "center") return std::make_unique<CenterLoss>(c, classes, dim, dev);
  if (c.kind == "snnl") {
    if (!(c.temperature > 0.0f)) {
      throw std::invalid_argument("--snnl-temperature must be > 0");
    }
    return std::make_unique<SoftNearestNeighbourLoss>(c, classes);
  }
  if (c.kind == "s2r") {
    if (!(c.slope > 0.0f)) throw std::invalid_argument("--s2r-slope must be > 0");
    return std::make_unique<SigmaSquaredReduction>(c, classes, dim, dev);
  }
  throw std::invalid_argument("unknown loss '" + c.kind + "' (use ce, center, snnl or s2r)");
}

}  // namespace sigmar
