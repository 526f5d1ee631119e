// The third oracle: forward values and gradients of the ops, and of one whole LeNet++ step,
// compared with PyTorch's. tools/make_op_fixtures.py wrote tests/fixtures/ops_v1.sgm (the
// checkpoint container of engine/tensor_file.hpp) with torch 1.13 on the CPU; this test only
// reads it, so it needs no Python.
//
// Each case holds the inputs, an upstream gradient dy, PyTorch's output y and the gradients
// of L = Σ dy ⊙ y. The comparison of a tensor is
//     |got − want| ≤ rtol · (|want| + max|want|)
// i.e. relative to each value, with an absolute floor set by the tensor's largest entry:
// a small entry of a sum that cancels carries the rounding error of its large terms, not of
// itself. rtol is chosen per op below from how many float32 roundings separate the two
// implementations (their summation orders differ; neither is "the" exact answer).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/ops.hpp"
#include "engine/tensor_file.hpp"
#include "models/models.hpp"

using namespace sigmar;

namespace {

const TensorFile& fixtures() {
  static const TensorFile tf =
      read_tensor_file(std::string(SIGMAR_SOURCE_DIR) + "/tests/fixtures/ops_v1.sgm");
  return tf;
}

Tensor load(const std::string& name, bool grad = false) {
  const NamedBuffer& b = fixtures().get(name);
  const Shape shape(b.shape.begin(), b.shape.end());
  Tensor t;
  if (b.dtype == "F32") {
    std::vector<float> v(b.bytes.size() / 4);
    std::memcpy(v.data(), b.bytes.data(), b.bytes.size());
    t = Tensor::from(v, shape);
  } else {
    REQUIRE_MESSAGE(b.dtype == "I32", name << " has dtype " << b.dtype);
    std::vector<int32_t> v(b.bytes.size() / 4);
    std::memcpy(v.data(), b.bytes.data(), b.bytes.size());
    t = Tensor::from_i32(v, shape);
  }
  if (grad) t.set_requires_grad(true);
  return t;
}

// Checks `got` against fixture entry `name`; returns max|got − want| / max|want|, the error
// relative to the tensor's scale that the final report quotes per op.
double compare(const Tensor& got, const std::string& name, double rtol) {
  REQUIRE_MESSAGE(got.defined(), name << ": no tensor to compare (gradient missing?)");
  const Tensor want_t = load(name);
  REQUIRE_MESSAGE(got.shape() == want_t.shape(),
                  name << ": shape " << shape_str(got.shape()) << " vs "
                       << shape_str(want_t.shape()));
  const std::vector<float> g = got.to_vector(), w = want_t.to_vector();
  double scale = 0, worst_abs = 0, used = 0;
  for (float v : w) scale = std::max(scale, double(std::abs(v)));
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double err = std::abs(double(g[i]) - w[i]);
    const double limit = rtol * (std::abs(w[i]) + scale);
    worst_abs = std::max(worst_abs, err);
    used = std::max(used, limit > 0 ? err / limit : (err > 0 ? 1e30 : 0));
    if (!(err <= limit) && bad++ == 0) first_bad = i;
  }
  const double rel = scale > 0 ? worst_abs / scale : worst_abs;
  MESSAGE(name << ": max |err| " << worst_abs << " (" << rel << " of max|ref| " << scale
               << "), " << 100 * used << "% of rtol " << rtol);
  CHECK_MESSAGE(bad == 0, name << ": " << bad << " of " << g.size() << " entries outside "
                               << "tolerance, first [" << first_bad << "] got "
                               << (bad ? g[first_bad] : 0) << " want "
                               << (bad ? w[first_bad] : 0));
  return rel;
}

// Runs y = op(inputs), backward with the stored dy; the inputs come from `prefix`.<name>.
Tensor forward_backward(const std::string& prefix, const std::vector<Tensor>& in,
                        const std::function<Tensor(const std::vector<Tensor>&)>& op) {
  Tensor y = op(in);
  y.backward(load(prefix + ".dy"));
  return y;
}

}  // namespace

TEST_CASE("op reference: the fixture file says what wrote it and which version it is") {
  const nlohmann::json& m = fixtures().metadata;
  REQUIRE(m.is_object());
  CHECK(m.at("version") == 1);
  CHECK(m.at("generator") == "tools/make_op_fixtures.py");
  CHECK(m.at("torch").get<std::string>().rfind("1.", 0) == 0);
  MESSAGE("fixtures from torch " << m.at("torch").get<std::string>());
}

// Convolution: each output sums Cin·k² products (27 or 75), each gradient of w sums over
// N·Ho·Wo positions (up to 105); oneDNN and PyTorch add them in different orders, so the
// results differ by a few float32 roundings of the partial sums: about √n·2^-24 relative to
// the tensor's scale, 1e-6 at most here. rtol 1e-5 (CASES' fp32 bound) leaves 10x.
TEST_CASE("op reference: conv2d 3x3 stride 2 pad 1 and 5x5 stride 1 pad 2, with bias") {
  for (const char* p : {"conv_s2p1", "conv_k5p2"}) {
    const std::string pre = p;
    CAPTURE(pre);
    Tensor x = load(pre + ".x", true), w = load(pre + ".w", true), b = load(pre + ".b", true);
    const Conv2dArgs args = pre == "conv_s2p1" ? Conv2dArgs{2, 1} : Conv2dArgs{1, 2};
    Tensor y = forward_backward(pre, {x, w, b}, [&](const std::vector<Tensor>& in) {
      return ops::conv2d(in[0], in[1], in[2], args);
    });
    compare(y, pre + ".y", 1e-5);
    compare(x.grad(), pre + ".dx", 1e-5);
    compare(w.grad(), pre + ".dw", 1e-5);
    compare(b.grad(), pre + ".db", 1e-5);
  }
}

// Pooling selects values and routes gradients without arithmetic (the inputs have no ties):
// the results must be identical, rtol 0.
TEST_CASE("op reference: max_pool2d 2x2 stride 2 and 3x3 stride 2") {
  for (int k : {2, 3}) {
    const std::string pre = k == 2 ? "pool_k2s2" : "pool_k3s2";
    CAPTURE(pre);
    Tensor x = load(pre + ".x", true);
    Tensor y = forward_backward(pre, {x}, [&](const std::vector<Tensor>& in) {
      return ops::max_pool2d(in[0], {k, 2});
    });
    compare(y, pre + ".y", 0);
    compare(x.grad(), pre + ".dx", 0);
  }
}

// A mean of 35 values: we sum in double, PyTorch in float; a few roundings of 2^-24.
TEST_CASE("op reference: global_avg_pool") {
  Tensor x = load("gap.x", true);
  Tensor y = forward_backward("gap", {x}, [](const std::vector<Tensor>& in) {
    return ops::global_avg_pool(in[0]);
  });
  compare(y, "gap.y", 1e-6);
  compare(x.grad(), "gap.dx", 1e-6);
}

// Batch norm: statistics over 105 (or 5) values, normalised and scaled. We reduce in double,
// PyTorch in float with its own order; the backward's sums of dy·x̂ cancel, so their error is
// relative to the scale of the terms, which the tensor-scale floor covers. rtol 1e-5.
TEST_CASE("op reference: batch_norm training on [N,C,H,W] and [N,C], then eval mode") {
  for (const char* p : {"bn2d", "bn1d"}) {
    const std::string pre = p;
    CAPTURE(pre);
    Tensor x = load(pre + ".x", true), gamma = load(pre + ".gamma", true);
    Tensor beta = load(pre + ".beta", true);
    Tensor rm = load(pre + ".running_mean0"), rv = load(pre + ".running_var0");
    Tensor y = forward_backward(pre, {x, gamma, beta}, [&](const std::vector<Tensor>& in) {
      return ops::batch_norm(in[0], in[1], in[2], rm, rv, true);
    });
    compare(y, pre + ".y", 1e-5);
    compare(rm, pre + ".running_mean", 1e-5);
    compare(rv, pre + ".running_var", 1e-5);
    compare(x.grad(), pre + ".dx", 1e-5);
    compare(gamma.grad(), pre + ".dgamma", 1e-5);
    compare(beta.grad(), pre + ".dbeta", 1e-5);

    // Eval mode with the running statistics just updated, forward and backward.
    Tensor xe = load(pre + ".x_eval", true);
    Tensor ge = load(pre + ".gamma", true), be = load(pre + ".beta", true);
    Tensor ye = ops::batch_norm(xe, ge, be, rm, rv, false);
    ye.backward(load(pre + ".dy_eval"));
    compare(ye, pre + ".y_eval", 1e-5);
    compare(xe.grad(), pre + ".dx_eval", 1e-5);
    compare(ge.grad(), pre + ".dgamma_eval", 1e-5);
    compare(be.grad(), pre + ".dbeta_eval", 1e-5);
  }
}

// Linear: dot products of 5 (forward, dw over the batch of 3) or 4 terms; rtol 1e-5.
TEST_CASE("op reference: linear with and without bias") {
  Tensor x = load("linear.x", true), w = load("linear.w", true), b = load("linear.b", true);
  Tensor y = forward_backward("linear", {x, w, b}, [](const std::vector<Tensor>& in) {
    return ops::linear(in[0], in[1], in[2]);
  });
  compare(y, "linear.y", 1e-5);
  compare(x.grad(), "linear.dx", 1e-5);
  compare(w.grad(), "linear.dw", 1e-5);
  compare(b.grad(), "linear.db", 1e-5);

  Tensor x2 = load("linear_nobias.x", true), w2 = load("linear_nobias.w", true);
  Tensor y2 = forward_backward("linear_nobias", {x2, w2}, [](const std::vector<Tensor>& in) {
    return ops::linear(in[0], in[1], Tensor());
  });
  compare(y2, "linear_nobias.y", 1e-5);
  compare(x2.grad(), "linear_nobias.dx", 1e-5);
  compare(w2.grad(), "linear_nobias.dw", 1e-5);
}

// PReLU: y and dx are one multiplication each (identical roundings: rtol 1e-7, one ulp);
// the slope gradient sums up to 105·3 products, which we add in double: rtol 1e-5.
TEST_CASE("op reference: prelu with per-channel and shared slopes") {
  for (const char* p : {"prelu_channel", "prelu_shared"}) {
    const std::string pre = p;
    CAPTURE(pre);
    Tensor x = load(pre + ".x", true), a = load(pre + ".a", true);
    Tensor y = forward_backward(pre, {x, a}, [](const std::vector<Tensor>& in) {
      return ops::prelu(in[0], in[1]);
    });
    compare(y, pre + ".y", 1e-7);
    compare(x.grad(), pre + ".dx", 1e-7);
    compare(a.grad(), pre + ".da", 1e-5);
  }
}

// Softmax CE: exponentials and a log of 7 terms per row (we in double, PyTorch in float).
TEST_CASE("op reference: softmax cross-entropy, loss and gradient") {
  Tensor z = load("ce.logits", true);
  Tensor loss = ops::softmax_cross_entropy(z, load("ce.labels"));
  loss.backward();
  compare(loss, "ce.loss", 1e-6);
  compare(z.grad(), "ce.dlogits", 1e-6);
}

namespace {

// The weight formula of tools/make_op_fixtures.py: a multiplicative hash of the element index
// gives 11 bits; weights are (bits − 1024)·2^-e and slopes (bits mod 9 + 12)/64, all exact in
// float32, so both sides hold the same bits.
std::vector<float> formula_values(int64_t seed, int64_t n, bool slope, int exponent) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = (uint64_t(i) * 2654435761ull + uint64_t(seed + 1) * 1013904223ull) &
                       0xffffffffull;
    const int64_t top = int64_t(h >> 21);
    v[i] = slope ? float(top % 9 + 12) / 64.0f
                 : float(top - 1024) * std::ldexp(1.0f, -exponent);
  }
  return v;
}

}  // namespace

// LeNet++ at batch 2 on a 28×28 input: six 5×5 convolutions (up to 3,200 products per
// output), PReLUs, pools, two linear layers and CE, forward and backward. Rounding
// differences compound through the eight layers each way: measured at up to 4e-6 of the
// tensor's scale against torch 1.13 with oneDNN's AVX-512 kernels. rtol 2e-5 leaves 5x for
// other instruction sets (other blockings, other summation orders). A pool whose choice
// flipped on a near-tie, or any indexing fault, would show as an error of order 1.
TEST_CASE("op reference: LeNet++ forward and backward at batch 2") {
  const nlohmann::json& meta = fixtures().metadata.at("lenetpp");
  ModelConfig cfg;
  cfg.name = "lenetpp";
  cfg.in_channels = meta.at("config").at("in_channels");
  cfg.image_size = meta.at("config").at("image_size");
  cfg.feature_dim = meta.at("config").at("feature_dim");
  cfg.num_classes = meta.at("config").at("num_classes");
  Rng rng(1);
  auto model = make_model(cfg, rng, Device::cpu);
  std::vector<NamedTensor> params = model->parameters();
  const nlohmann::json& plist = meta.at("params");
  REQUIRE(params.size() == plist.size());
  for (size_t k = 0; k < params.size(); ++k) {
    const nlohmann::json& p = plist[k];
    REQUIRE(params[k].name == p.at("name").get<std::string>());
    REQUIRE(params[k].tensor.shape() == p.at("shape").get<Shape>());
    const bool slope = p.at("kind") == "slope";
    params[k].tensor.copy_from(Tensor::from(
        formula_values(p.at("seed").get<int64_t>(), params[k].tensor.numel(), slope,
                       p.at("exponent").get<int>()),
        params[k].tensor.shape()));
  }

  Tensor x = load("lenet.x", true);
  ModelOutput out = model->forward(x, true);
  Tensor loss = ops::softmax_cross_entropy(out.logits, load("lenet.labels"));
  loss.backward();
  compare(out.features, "lenet.features", 2e-5);
  compare(out.logits, "lenet.logits", 2e-5);
  compare(loss, "lenet.loss", 2e-5);
  compare(x.grad(), "lenet.dx", 2e-5);
  for (const NamedTensor& p : params) {
    const std::string name = "lenet.grad." + p.name;
    if (fixtures().has(name)) {
      compare(p.tensor.grad(), name, 2e-5);
      continue;
    }
    // Large gradients: 256 evenly spaced entries and the L2 norm of the whole tensor.
    const std::vector<float> g = p.tensor.grad().to_vector();
    std::vector<float> sample(256);
    double sq = 0;
    for (size_t j = 0; j < 256; ++j) sample[j] = g[j * g.size() / 256];
    for (float v : g) sq += double(v) * v;
    compare(Tensor::from(sample, {256}), name + ".sample", 2e-5);
    compare(Tensor::from({float(std::sqrt(sq))}, {1}), name + ".norm", 2e-5);
  }
}
