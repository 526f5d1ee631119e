// Tests of every differentiable op in engine/ops.hpp on the CPU backend: a central-difference
// gradient check of each (tests/gradcheck.hpp) on small odd shapes, the conventions of SPEC 1
// (ties, kinks, accumulation, batch-norm statistics), the cases of CASES.md that concern ops
// (11-14), and the preconditions each op checks before it runs.
//
// Tolerances of the gradient checks: the scaled error |a − n| / max(|a|, |n|, 1) of one
// element has two sources. Rounding: the weighted sum L of float outputs carries an error of
// about 2^-24 times the size of the outputs a perturbation changes, and dividing by 2h
// magnifies it by 1/(2h). Truncation: h²·|f'''|/6, zero for ops that are linear in the
// perturbed input (conv, linear, add, pooling, ReLU/PReLU away from kinks). Each check names
// its h; 1e-3 leaves a margin of 10x or more over both sources in every case below, and the
// MESSAGE lines print the share of it actually used.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops.hpp"
#include "engine/rng.hpp"
#include "tests/gradcheck.hpp"

using namespace sigmar;
using sigmar::testing::check_gradients;
using sigmar::testing::GradCheckOptions;

namespace {

// Uniform values in [lo, hi), as a leaf that asks for a gradient.
Tensor uniform(const Shape& shape, Rng& rng, float lo = -1.0f, float hi = 1.0f,
               bool grad = true) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (float& e : v) e = rng.uniform(lo, hi);
  Tensor t = Tensor::from(v, shape);
  t.set_requires_grad(grad);
  return t;
}

// Values of either sign with |x| in [0.2, 1.2): at least 20h away from the kink at 0 of ReLU
// and PReLU for h = 1e-2, so no perturbation crosses it.
Tensor away_from_zero(const Shape& shape, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (float& e : v) {
    const float mag = rng.uniform(0.2f, 1.2f);
    e = rng.uniform() < 0.5f ? -mag : mag;
  }
  return Tensor::from(v, shape).set_requires_grad(true);
}

// A shuffled ramp with steps of 0.05: every value distinct and 5h apart for h = 1e-2, so no
// perturbation makes two entries of a max-pool window trade places.
Tensor distinct_values(const Shape& shape, Rng& rng) {
  const int64_t n = shape_numel(shape);
  std::vector<int32_t> perm = rng.permutation(n);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = 0.05f * static_cast<float>(perm[i] - n / 2);
  return Tensor::from(v, shape).set_requires_grad(true);
}

// h for ops that are linear in each input: the difference quotient is exact for any h, so a
// large step only shrinks the rounding term.
GradCheckOptions linear_op() {
  GradCheckOptions o;
  o.step = 0.1;
  return o;
}

// Piecewise-linear ops (ReLU, PReLU, max-pool): exact between kinks; the one-sided slopes
// agree to rounding there, so a disagreement above 1e-2 marks a straddled kink.
GradCheckOptions piecewise_op() {
  GradCheckOptions o;
  o.step = 1e-2;
  o.kink_tolerance = 1e-2;
  return o;
}

void expect_values(const Tensor& t, const std::vector<float>& want, const char* what) {
  const std::vector<float> got = t.to_vector();
  REQUIRE_MESSAGE(got.size() == want.size(), what);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK_MESSAGE(got[i] == doctest::Approx(want[i]).epsilon(1e-6), what << " [" << i << "]");
  }
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

// ---- the checker itself -----------------------------------------------------------------------

TEST_CASE("op: the gradient checker catches a wrong gradient and skips straddled kinks") {
  // A fused loss whose stored gradient is off by 1% in one entry must fail the check.
  auto half_square = [](bool wrong) {
    return [wrong](const std::vector<Tensor>& in) {
      std::vector<float> v = in[0].to_vector(), g = v;
      double l = 0;
      for (float e : v) l += 0.5 * double(e) * e;
      if (wrong) g[2] *= 1.01f;
      return ops::fused_loss("half_square", {Tensor::from({float(l)}, {1}),
                                             Tensor::from(g, in[0].shape())}, in[0]);
    };
  };
  GradCheckOptions o;
  Tensor x = Tensor::from({3.0f, -2.0f, 4.0f}, {3}).set_requires_grad(true);
  CHECK(testing::gradcheck(half_square(false), {x}, o).worst <= o.tolerance);
  Tensor x2 = Tensor::from({3.0f, -2.0f, 4.0f}, {3}).set_requires_grad(true);
  CHECK(testing::gradcheck(half_square(true), {x2}, o).worst > o.tolerance);

  // ReLU inputs within h of 0: the difference straddles the kink and must be skipped.
  Tensor near = Tensor::from({0.004f, -0.003f, 0.5f, -0.5f}, {4}).set_requires_grad(true);
  testing::GradCheckReport r = testing::gradcheck(
      [](const std::vector<Tensor>& in) { return ops::relu(in[0]); }, {near}, piecewise_op());
  CHECK(r.skipped == 2);
  CHECK(r.checked == 2);
  CHECK(r.worst <= 1e-6);
}

// ---- gradient checks, one per op ------------------------------------------------------------

TEST_CASE("op: conv2d 3x3 stride 2 pad 1 with bias, gradients of x, w, b") {
  Rng rng(11);
  Tensor x = uniform({3, 3, 5, 7}, rng), w = uniform({4, 3, 3, 3}, rng);
  Tensor b = uniform({4}, rng);
  check_gradients("conv2d s2 p1", [](const std::vector<Tensor>& in) {
    return ops::conv2d(in[0], in[1], in[2], {2, 1});
  }, {x, w, b}, linear_op());
}

TEST_CASE("op: conv2d 5x5 stride 1 pad 2 (LeNet++), gradients of x, w, b") {
  Rng rng(12);
  Tensor x = uniform({3, 3, 5, 7}, rng), w = uniform({4, 3, 5, 5}, rng);
  Tensor b = uniform({4}, rng);
  check_gradients("conv2d k5 p2", [](const std::vector<Tensor>& in) {
    return ops::conv2d(in[0], in[1], in[2], {1, 2});
  }, {x, w, b}, linear_op());
}

TEST_CASE("op: conv2d without bias (ResNet-18's convolutions)") {
  Rng rng(13);
  Tensor x = uniform({3, 3, 5, 7}, rng), w = uniform({4, 3, 3, 3}, rng);
  check_gradients("conv2d no bias", [](const std::vector<Tensor>& in) {
    return ops::conv2d(in[0], in[1], Tensor(), {2, 1});
  }, {x, w}, linear_op());
}

// The first layer's input never asks for a gradient, and a frozen layer's weights do not:
// each subset takes its own backward path (oneDNN plans keyed on the bias, dy reordered for
// whichever primitive runs), so each is checked.
TEST_CASE("op: conv2d and linear with only some inputs asking for gradients") {
  Rng rng(14);
  const std::vector<std::vector<bool>> subsets = {
      {false, true, true}, {true, false, false}, {true, true, false}, {false, false, true}};
  for (const std::vector<bool>& wants : subsets) {
    CAPTURE(wants[0]);
    CAPTURE(wants[1]);
    CAPTURE(wants[2]);
    Tensor x = uniform({3, 3, 5, 7}, rng, -1.0f, 1.0f, wants[0]);
    Tensor w = uniform({4, 3, 3, 3}, rng, -1.0f, 1.0f, wants[1]);
    Tensor b = uniform({4}, rng, -1.0f, 1.0f, wants[2]);
    check_gradients("conv2d subset", [](const std::vector<Tensor>& in) {
      return ops::conv2d(in[0], in[1], in[2], {2, 1});
    }, {x, w, b}, linear_op());
    Tensor x2 = uniform({3, 5}, rng, -1.0f, 1.0f, wants[0]);
    Tensor w2 = uniform({4, 5}, rng, -1.0f, 1.0f, wants[1]);
    Tensor b2 = uniform({4}, rng, -1.0f, 1.0f, wants[2]);
    check_gradients("linear subset", [](const std::vector<Tensor>& in) {
      return ops::linear(in[0], in[1], in[2]);
    }, {x2, w2, b2}, linear_op());
    CHECK(x.grad().defined() == wants[0]);
    CHECK(w.grad().defined() == wants[1]);
    CHECK(b.grad().defined() == wants[2]);
  }
}

TEST_CASE("op: max_pool2d 2x2 stride 2, gradient of x") {
  Rng rng(21);
  Tensor x = distinct_values({3, 3, 5, 7}, rng);
  check_gradients("max_pool2d k2 s2", [](const std::vector<Tensor>& in) {
    return ops::max_pool2d(in[0], {2, 2});
  }, {x}, piecewise_op());
}

TEST_CASE("op: max_pool2d 3x3 stride 2 (overlapping windows), gradient of x") {
  Rng rng(22);
  Tensor x = distinct_values({3, 3, 5, 7}, rng);
  check_gradients("max_pool2d k3 s2", [](const std::vector<Tensor>& in) {
    return ops::max_pool2d(in[0], {3, 2});
  }, {x}, piecewise_op());
}

TEST_CASE("op: global_avg_pool, gradient of x") {
  Rng rng(23);
  Tensor x = uniform({3, 3, 5, 7}, rng);
  check_gradients("global_avg_pool", [](const std::vector<Tensor>& in) {
    return ops::global_avg_pool(in[0]);
  }, {x}, linear_op());
}

TEST_CASE("op: linear with bias, gradients of x, w, b") {
  Rng rng(31);
  Tensor x = uniform({3, 5}, rng), w = uniform({4, 5}, rng), b = uniform({4}, rng);
  check_gradients("linear", [](const std::vector<Tensor>& in) {
    return ops::linear(in[0], in[1], in[2]);
  }, {x, w, b}, linear_op());
}

TEST_CASE("op: linear without bias, gradients of x, w") {
  Rng rng(32);
  Tensor x = uniform({3, 5}, rng), w = uniform({4, 5}, rng);
  check_gradients("linear no bias", [](const std::vector<Tensor>& in) {
    return ops::linear(in[0], in[1], Tensor());
  }, {x, w}, linear_op());
}

TEST_CASE("op: relu, gradient of x away from 0") {
  Rng rng(41);
  Tensor x = away_from_zero({3, 3, 5, 7}, rng);
  check_gradients("relu", [](const std::vector<Tensor>& in) { return ops::relu(in[0]); }, {x},
                  piecewise_op());
}

TEST_CASE("op: prelu with one slope per channel on [N,C,H,W], gradients of x and a") {
  Rng rng(42);
  Tensor x = away_from_zero({3, 3, 5, 7}, rng);
  Tensor a = Tensor::from({0.25f, -0.1f, 0.6f}, {3}).set_requires_grad(true);
  check_gradients("prelu per channel", [](const std::vector<Tensor>& in) {
    return ops::prelu(in[0], in[1]);
  }, {x, a}, piecewise_op());
}

TEST_CASE("op: prelu with one shared slope, on [N,C,H,W] and on [N,C]") {
  Rng rng(43);
  Tensor a = Tensor::from({0.3f}, {1}).set_requires_grad(true);
  auto f = [](const std::vector<Tensor>& in) { return ops::prelu(in[0], in[1]); };
  check_gradients("prelu shared, 4-d", f, {away_from_zero({3, 3, 5, 7}, rng), a},
                  piecewise_op());
  Tensor a2 = Tensor::from({0.3f}, {1}).set_requires_grad(true);
  check_gradients("prelu shared, 2-d", f, {away_from_zero({3, 5}, rng), a2}, piecewise_op());
  Tensor a3 = Tensor::from({0.1f, 0.2f, 0.3f, 0.4f, 0.5f}, {5}).set_requires_grad(true);
  check_gradients("prelu per channel, 2-d", f, {away_from_zero({3, 5}, rng), a3},
                  piecewise_op());
}

TEST_CASE("op: relu and prelu at exactly 0 take the negative side's slope (SPEC 1)") {
  Tensor x = Tensor::from({0.0f, 0.0f, 1.0f, -2.0f}, {2, 2}).set_requires_grad(true);
  Tensor dy = Tensor::from({1.0f, 1.0f, 1.0f, 1.0f}, {2, 2});
  ops::relu(x).backward(dy);
  expect_values(x.grad(), {0, 0, 1, 0}, "relu dx");
  x.zero_grad();
  Tensor a = Tensor::from({0.25f, 0.5f}, {2}).set_requires_grad(true);
  ops::prelu(x, a).backward(dy);
  expect_values(x.grad(), {0.25f, 0.5f, 1, 0.5f}, "prelu dx");
  // ∂y/∂a = x on the non-positive side: 0 at x = 0, so only the −2 contributes.
  expect_values(a.grad(), {0, -2}, "prelu da");
}

// Batch norm is smooth but not linear in x: truncation h²·|f'''|/6 with h = 1e-2 and |f'''|
// of order 1/σ³ ≈ 1 is about 2e-5, well under the tolerance.
TEST_CASE("op: batch_norm training mode on [N,C] and [N,C,H,W], gradients of x, gamma, beta") {
  Rng rng(51);
  for (Shape shape : {Shape{5, 3}, Shape{3, 3, 5, 7}}) {
    Tensor x = uniform(shape, rng, -2.0f, 3.0f);
    Tensor gamma = uniform({3}, rng, 0.5f, 1.5f), beta = uniform({3}, rng);
    Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.0f);
    GradCheckOptions o;
    o.step = 1e-2;
    check_gradients("batch_norm train " + shape_str(shape), [&](const std::vector<Tensor>& in) {
      return ops::batch_norm(in[0], in[1], in[2], rm, rv, true);
    }, {x, gamma, beta}, o);
  }
}

TEST_CASE("op: batch_norm eval mode passes gradients to x, gamma, beta") {
  Rng rng(52);
  Tensor x = uniform({3, 3, 5, 7}, rng);
  Tensor gamma = uniform({3}, rng, 0.5f, 1.5f), beta = uniform({3}, rng);
  Tensor rm = Tensor::from({0.1f, -0.2f, 0.3f}, {3}), rv = Tensor::from({0.5f, 1.5f, 2.0f}, {3});
  check_gradients("batch_norm eval", [&](const std::vector<Tensor>& in) {
    return ops::batch_norm(in[0], in[1], in[2], rm, rv, false);
  }, {x, gamma, beta}, linear_op());
}

TEST_CASE("op: add and add_scaled, gradients of both inputs") {
  Rng rng(61);
  check_gradients("add", [](const std::vector<Tensor>& in) { return ops::add(in[0], in[1]); },
                  {uniform({3, 5}, rng), uniform({3, 5}, rng)}, linear_op());
  check_gradients("add_scaled", [](const std::vector<Tensor>& in) {
    return ops::add_scaled(in[0], in[1], -0.75f);
  }, {uniform({1}, rng), uniform({1}, rng)}, linear_op());
}

TEST_CASE("op: reshape and flatten pass gradients through unchanged") {
  Rng rng(62);
  // Each feeds a linear layer so that a wrong element order in the backward would show.
  Tensor w = uniform({2, 105}, rng);
  check_gradients("flatten", [](const std::vector<Tensor>& in) {
    return ops::linear(ops::flatten(in[0]), in[1], Tensor());
  }, {uniform({3, 3, 5, 7}, rng), w}, linear_op());
  Tensor w2 = uniform({4, 7}, rng);
  check_gradients("reshape", [](const std::vector<Tensor>& in) {
    return ops::linear(ops::reshape(in[0], {15, 7}), in[1], Tensor());
  }, {uniform({3, 5, 7}, rng), w2}, linear_op());
}

// Softmax CE is smooth; its third derivative is bounded by about 1 for any logits, so
// h = 1e-2 gives truncation near 2e-5.
TEST_CASE("op: softmax_cross_entropy, gradient of the logits") {
  Rng rng(71);
  Tensor labels = Tensor::from_i32({6, 0, 3, 3, 1}, {5});
  GradCheckOptions o;
  o.step = 1e-2;
  check_gradients("softmax CE", [&](const std::vector<Tensor>& in) {
    return ops::softmax_cross_entropy(in[0], labels);
  }, {uniform({5, 7}, rng, -3.0f, 3.0f)}, o);
  // Through a chain: CE + 0.5·CE of a linear map, so add_scaled and fused_loss meet an
  // incoming gradient other than 1.
  check_gradients("CE + 0.5 CE(linear)", [&](const std::vector<Tensor>& in) {
    Tensor z2 = ops::linear(in[0], in[1], in[2]);
    return ops::add_scaled(ops::softmax_cross_entropy(in[0], labels),
                           ops::softmax_cross_entropy(z2, labels), 0.5f);
  }, {uniform({5, 7}, rng, -3.0f, 3.0f), uniform({7, 7}, rng), uniform({7}, rng)}, o);
}

TEST_CASE("op: fused_loss scales the precomputed gradient by the incoming one") {
  // A hand-made loss L = Σ x²/2 with gradient x, fed to a weight of −3: dL/dx = −3·x.
  Tensor x = Tensor::from({1.0f, -2.0f, 0.5f}, {3}).set_requires_grad(true);
  LossOut out{Tensor::from({2.625f}, {1}), x.clone()};
  Tensor loss = ops::fused_loss("half_square", out, x);
  Tensor zero = Tensor::zeros({1});
  ops::add_scaled(zero, loss, -3.0f).backward();
  expect_values(x.grad(), {-3.0f, 6.0f, -1.5f}, "fused_loss dx");
}

// ---- SPEC 1 conventions and CASES.md ---------------------------------------------------------

TEST_CASE("op: max-pool ties give the gradient to the first maximum (CASES 11)") {
  Tensor x = Tensor::from({1, 2, 2, 2}, {1, 1, 2, 2}).set_requires_grad(true);
  Tensor y = ops::max_pool2d(x, {2, 2});
  expect_values(y, {2}, "max-pool forward");
  y.backward(Tensor::from({1}, {1, 1, 1, 1}));
  expect_values(x.grad(), {0, 1, 0, 0}, "max-pool dx");
  // Overlapping windows: each window's first maximum gets its own dy, and they add.
  Tensor x2 = Tensor::from({5, 5, 5, 5, 5, 5, 5, 5, 5}, {1, 1, 3, 3}).set_requires_grad(true);
  ops::max_pool2d(x2, {2, 1}).backward(Tensor::from({1, 2, 3, 4}, {1, 1, 2, 2}));
  expect_values(x2.grad(), {1, 2, 0, 3, 4, 0, 0, 0, 0}, "overlapping ties dx");
}

TEST_CASE("op: a weight used twice gets both gradients; z = x + x gives 2 (CASES 12)") {
  Tensor W = Tensor::from({1, 2, 3, 4}, {2, 2}).set_requires_grad(true);
  Tensor x1 = Tensor::from({1, 0}, {1, 2}), x2 = Tensor::from({0, 1}, {1, 2});
  Tensor y = ops::add(ops::linear(x1, W, Tensor()), ops::linear(x2, W, Tensor()));
  expect_values(y, {3, 7}, "y");
  y.backward(Tensor::full({1, 2}, 1.0f));  // L = sum(y)
  expect_values(W.grad(), {1, 1, 1, 1}, "dW");

  Tensor x = Tensor::from({0.5f, -1.0f, 2.0f}, {3}).set_requires_grad(true);
  ops::add(x, x).backward(Tensor::full({3}, 1.0f));
  expect_values(x.grad(), {2, 2, 2}, "d(x + x)/dx");
}

namespace {

// A direct convolution in double, forward and backward, written from the definition:
// y[n,o,i,j] = b[o] + Σ_{c,p,q} w[o,c,p,q] · x[n, c, i·s + p − pad, j·s + q − pad].
struct NaiveConv {
  std::vector<double> y, dx, dw, db;
};

NaiveConv naive_conv(const Tensor& xt, const Tensor& wt, const Tensor& bt, const Tensor& dyt,
                     int s, int pad) {
  const int64_t N = xt.dim(0), Ci = xt.dim(1), H = xt.dim(2), W = xt.dim(3);
  const int64_t Co = wt.dim(0), K = wt.dim(2);
  const int64_t Ho = (H + 2 * pad - K) / s + 1, Wo = (W + 2 * pad - K) / s + 1;
  const std::vector<float> x = xt.to_vector(), w = wt.to_vector(), b = bt.to_vector();
  const std::vector<float> dy = dyt.to_vector();
  NaiveConv r{std::vector<double>(N * Co * Ho * Wo), std::vector<double>(x.size()),
              std::vector<double>(w.size()), std::vector<double>(Co)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < Co; ++o)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
          const int64_t yi = ((n * Co + o) * Ho + i) * Wo + j;
          double acc = b[o];
          r.db[o] += dy[yi];
          for (int64_t c = 0; c < Ci; ++c)
            for (int64_t p = 0; p < K; ++p)
              for (int64_t q = 0; q < K; ++q) {
                const int64_t u = i * s + p - pad, v = j * s + q - pad;
                if (u < 0 || u >= H || v < 0 || v >= W) continue;  // zero padding
                const int64_t xi = ((n * Ci + c) * H + u) * W + v;
                const int64_t wi = ((o * Ci + c) * K + p) * K + q;
                acc += double(w[wi]) * x[xi];
                r.dx[xi] += double(w[wi]) * dy[yi];
                r.dw[wi] += double(x[xi]) * dy[yi];
              }
          r.y[yi] = acc;
        }
  return r;
}

// Largest |got − want| / (|want| + max|want|) over a tensor: relative to each value, with a
// floor at the tensor's largest entry, because an entry whose sum cancels keeps the rounding
// error of its large terms (see CASES 13 below).
double worst_error(const Tensor& got, const std::vector<double>& want) {
  const std::vector<float> g = got.to_vector();
  REQUIRE(g.size() == want.size());
  double scale = 0, worst = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < g.size(); ++i) {
    const double floor = std::abs(want[i]) + scale;
    worst = std::max(worst, floor > 0 ? std::abs(g[i] - want[i]) / floor : std::abs(g[i]));
  }
  return worst;
}

}  // namespace

// CASES 13: the GPU failure was a workspace sized for one batch and reused for a larger one.
// On the CPU the analogue is the per-shape plan cache and its reorder buffers: every batch
// size in the sequence, including a return to an earlier one, must give fresh correct values.
// 1e-4 is the case's own bound. The forward and dx sum 27 and 72 products; dw and db sum
// N·H·W of them (up to 12,672), whose float32 rounding grows like √n·2^-24 relative to the
// tensor's scale: about 1e-5 at the largest batch, still 10x inside the bound.
TEST_CASE("op: conv2d 3->8 3x3 pad 1 at batch 64, 1, 128, 64 matches a naive conv (CASES 13)") {
  Rng rng(81);
  Tensor w = uniform({8, 3, 3, 3}, rng), b = uniform({8}, rng);
  double worst = 0;
  for (int64_t batch : {64, 1, 128, 64}) {
    CAPTURE(batch);
    Tensor x = uniform({batch, 3, 9, 11}, rng);
    w.zero_grad();
    b.zero_grad();
    Tensor y = ops::conv2d(x, w, b, {1, 1});
    REQUIRE(y.shape() == Shape{batch, 8, 9, 11});
    Tensor dy = uniform(y.shape(), rng, -1.0f, 1.0f, false);
    y.backward(dy);
    const NaiveConv ref = naive_conv(x, w, b, dy, 1, 1);
    for (double e : {worst_error(y, ref.y), worst_error(x.grad(), ref.dx),
                     worst_error(w.grad(), ref.dw), worst_error(b.grad(), ref.db)}) {
      CHECK(e <= 1e-4);
      worst = std::max(worst, e);
    }
  }
  MESSAGE("conv sequence vs naive: worst scaled error " << worst << " = " << worst / 1e-4 * 100
                                                         << "% of 1e-4");
}

TEST_CASE("op: conv + overlapping max-pool backward is bitwise repeatable (CASES 14)") {
  // Small integers make many exact ties in the conv output, so the tie rule is exercised too.
  Rng rng(82);
  auto ints = [&](const Shape& s) {
    std::vector<float> v(static_cast<size_t>(shape_numel(s)));
    for (float& e : v) e = static_cast<float>(static_cast<int>(rng.below(5)) - 2);
    return Tensor::from(v, s).set_requires_grad(true);
  };
  Tensor x = ints({16, 3, 15, 17}), w = ints({8, 3, 3, 3}), b = ints({8});
  std::vector<Tensor> first;
  for (int run = 0; run < 2; ++run) {
    for (Tensor* t : {&x, &w, &b}) t->zero_grad();
    Tensor y = ops::max_pool2d(ops::conv2d(x, w, b, {1, 1}), {3, 2});
    Rng dy_rng(83);
    y.backward(uniform(y.shape(), dy_rng, -1.0f, 1.0f, false));
    if (run == 0) {
      first = {x.grad().clone(), w.grad().clone(), b.grad().clone()};
    } else {
      CHECK(same_bits(x.grad(), first[0]));
      CHECK(same_bits(w.grad(), first[1]));
      CHECK(same_bits(b.grad(), first[2]));
    }
  }
}

TEST_CASE("op: gradients accumulate across backward calls; zero_grad zeros them (SPEC 1)") {
  Rng rng(91);
  Tensor x = uniform({3, 5}, rng), w = uniform({4, 5}, rng), b = uniform({4}, rng);
  Tensor labels = Tensor::from_i32({0, 3, 1}, {3});
  auto loss = [&] { return ops::softmax_cross_entropy(ops::linear(x, w, b), labels); };
  loss().backward();
  const std::vector<float> once = w.grad().to_vector(), once_x = x.grad().to_vector();
  loss().backward();  // a second graph adds the same values again: exactly twice
  const std::vector<float> twice = w.grad().to_vector(), twice_x = x.grad().to_vector();
  for (size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == 2 * once[i]);
  for (size_t i = 0; i < once_x.size(); ++i) CHECK(twice_x[i] == 2 * once_x[i]);

  for (Tensor* t : {&x, &w, &b}) t->zero_grad();
  for (Tensor* t : {&x, &w, &b}) {
    for (float v : t->grad().to_vector()) CHECK(v == 0.0f);
  }
  loss().backward();
  const std::vector<float> again = w.grad().to_vector();
  for (size_t i = 0; i < once.size(); ++i) CHECK(again[i] == once[i]);
}

TEST_CASE("op: under NoGradGuard ops record nothing; backward refuses a mis-shaped seed") {
  Rng rng(93);
  Tensor x = uniform({3, 5}, rng), w = uniform({4, 5}, rng);
  {
    NoGradGuard no_grad;
    Tensor y = ops::relu(ops::linear(x, w, Tensor()));
    CHECK_FALSE(y.grad_fn());
    CHECK_FALSE(y.requires_grad());
  }
  Tensor y = ops::linear(x, w, Tensor());
  REQUIRE(y.grad_fn());
  CHECK_THROWS_WITH_AS(y.backward(Tensor::full({4, 3}, 1.0f)), doctest::Contains("[4, 3]"),
                       std::invalid_argument);
  CHECK_THROWS_AS(y.backward(), std::logic_error);  // no seed: the output must be a scalar
}

TEST_CASE("op: batch_norm running statistics after one step, then eval mode uses them") {
  // Two channels of four samples: channel 0 holds 1, 2, 3, 6 (mean 3, Σd² = 14), channel 1
  // holds −1, −1, 1, 1 (mean 0, Σd² = 4).
  Tensor x = Tensor::from({1, -1, 2, -1, 3, 1, 6, 1}, {4, 2});
  Tensor gamma = Tensor::from({2.0f, 0.5f}, {2}), beta = Tensor::from({0.1f, -0.3f}, {2});
  Tensor rm = Tensor::from({0.5f, -1.0f}, {2}), rv = Tensor::from({2.0f, 0.5f}, {2});
  Tensor y = ops::batch_norm(x, gamma, beta, rm, rv, true);
  // Batch statistics use the biased variance (14/4, 4/4) ...
  const double eps = 1e-5, v0 = 14.0 / 4, v1 = 4.0 / 4;
  expect_values(y, {float(2 * (1 - 3) / std::sqrt(v0 + eps) + 0.1),
                    float(0.5 * (-1) / std::sqrt(v1 + eps) - 0.3),
                    float(2 * (2 - 3) / std::sqrt(v0 + eps) + 0.1),
                    float(0.5 * (-1) / std::sqrt(v1 + eps) - 0.3),
                    float(2 * (3 - 3) / std::sqrt(v0 + eps) + 0.1),
                    float(0.5 * (1) / std::sqrt(v1 + eps) - 0.3),
                    float(2 * (6 - 3) / std::sqrt(v0 + eps) + 0.1),
                    float(0.5 * (1) / std::sqrt(v1 + eps) - 0.3)}, "train y");
  // ... the running ones the unbiased variance (14/3, 4/3), with momentum 0.1.
  expect_values(rm, {float(0.9 * 0.5 + 0.1 * 3), float(0.9 * -1.0 + 0.1 * 0)}, "running mean");
  expect_values(rv, {float(0.9 * 2.0 + 0.1 * 14.0 / 3), float(0.9 * 0.5 + 0.1 * 4.0 / 3)},
                "running var");

  const std::vector<float> m = rm.to_vector(), v = rv.to_vector();
  Tensor xe = Tensor::from({0.0f, 2.0f}, {1, 2});
  Tensor ye = ops::batch_norm(xe, gamma, beta, rm, rv, false);
  expect_values(ye, {float(2 * (0 - m[0]) / std::sqrt(v[0] + eps) + 0.1),
                     float(0.5 * (2 - m[1]) / std::sqrt(v[1] + eps) - 0.3)}, "eval y");
  expect_values(rm, m, "eval leaves the running mean");
  expect_values(rv, v, "eval leaves the running var");
}

TEST_CASE("op: conv2d + batch_norm + relu + pool + linear + CE chain (ResNet-like)") {
  // A whole small network in one check, so the ops' gradients are also checked as they
  // compose: a bias-free conv feeding batch norm, as in ResNet-18. Here the ReLU and max-pool
  // inputs cannot be placed away from kinks, so h = 1e-3 makes a straddled kink rare (the
  // kink test catches the rest); rounding then costs about 2^-24·|L|/2h ≈ 3e-5 with L ≈ 1.
  // The one-sided slopes also differ by about h·|f''| from curvature, well under 1e-2.
  Rng rng(92);
  Tensor rm = Tensor::zeros({4}), rv = Tensor::full({4}, 1.0f);
  Tensor labels = Tensor::from_i32({1, 0, 2}, {3});
  GradCheckOptions o = piecewise_op();
  o.step = 1e-3;
  check_gradients("small net", [&](const std::vector<Tensor>& in) {
    Tensor h = ops::batch_norm(ops::conv2d(in[0], in[1], Tensor(), {2, 1}), in[2], in[3], rm,
                               rv, true);
    h = ops::global_avg_pool(ops::max_pool2d(ops::relu(h), {2, 1}));
    return ops::softmax_cross_entropy(ops::linear(h, in[4], Tensor()), labels);
  }, {uniform({3, 2, 5, 7}, rng), uniform({4, 2, 3, 3}, rng), uniform({4}, rng, 0.5f, 1.5f),
      uniform({4}, rng), uniform({3, 4}, rng)}, o);
}

// ---- preconditions ---------------------------------------------------------------------------

TEST_CASE("op: preconditions fire with messages that say what is wrong") {
  using doctest::Contains;
  Tensor x4 = Tensor::zeros({2, 3, 5, 7}), w = Tensor::zeros({4, 3, 3, 3});
  // conv2d: ranks, channel mismatch, bias size
  CHECK_THROWS_WITH_AS(ops::conv2d(Tensor::zeros({3, 5, 7}), w, Tensor(), {}),
                       Contains("4 dims"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::conv2d(x4, Tensor::zeros({4, 3, 3}), Tensor(), {}),
                       Contains("weight"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::conv2d(Tensor::zeros({2, 2, 5, 7}), w, Tensor(), {}),
                       Contains("channels"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::conv2d(x4, w, Tensor::zeros({3}), {}), Contains("bias"),
                       std::invalid_argument);
  CHECK_THROWS_AS(ops::conv2d(x4, w, Tensor(), {0, 1}), std::invalid_argument);
  CHECK_THROWS_AS(ops::conv2d(Tensor::zeros({2, 3, 2, 2}), w, Tensor(), {1, 0}),
                  std::invalid_argument);
  // linear: ranks, width, bias size
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({3}), Tensor::zeros({4, 3}), Tensor()),
                       Contains("2 dims"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 5}), Tensor::zeros({4, 3}), Tensor()),
                       Contains("width"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 3}),
                                   Tensor::zeros({3})), Contains("bias"), std::invalid_argument);
  // pooling: rank, window larger than the input, zero stride
  CHECK_THROWS_WITH_AS(ops::max_pool2d(Tensor::zeros({3, 5, 7}), {2, 2}), Contains("4 dims"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::max_pool2d(Tensor::zeros({1, 1, 2, 7}), {3, 2}),
                       Contains("smaller than the window"), std::invalid_argument);
  CHECK_THROWS_AS(ops::max_pool2d(x4, {2, 0}), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::global_avg_pool(Tensor::zeros({2, 3})), Contains("4 dims"),
                       std::invalid_argument);
  // prelu: slope count
  CHECK_THROWS_WITH_AS(ops::prelu(x4, Tensor::zeros({2})), Contains("2 slopes for 3 channels"),
                       std::invalid_argument);
  CHECK_THROWS_AS(ops::prelu(Tensor::zeros({4}), Tensor::zeros({1})), std::invalid_argument);
  // add, reshape
  CHECK_THROWS_WITH_AS(ops::add(Tensor::zeros({2, 3}), Tensor::zeros({3, 2})),
                       Contains("shapes"), std::invalid_argument);
  CHECK_THROWS_AS(ops::reshape(Tensor::zeros({2, 3}), {4, 2}), std::invalid_argument);
}

TEST_CASE("op: batch_norm preconditions: rank and per-channel parameter sizes") {
  using doctest::Contains;
  Tensor g = Tensor::full({3}, 1.0f), b = Tensor::zeros({3});
  Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.0f);
  CHECK_THROWS_WITH_AS(ops::batch_norm(Tensor::zeros({2, 3, 4}), g, b, rm, rv, true),
                       Contains("[N,C]"), std::invalid_argument);
  Tensor g2 = Tensor::full({2}, 1.0f), rv2 = Tensor::full({2}, 1.0f);
  for (bool training : {true, false}) {
    CAPTURE(training);
    CHECK_THROWS_WITH_AS(ops::batch_norm(Tensor::zeros({2, 3}), g2, b, rm, rv, training),
                         Contains("3 channels"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(ops::batch_norm(Tensor::zeros({2, 3, 2, 2}), g, b, rm, rv2, training),
                         Contains("3 channels"), std::invalid_argument);
  }
}

TEST_CASE("op: softmax_cross_entropy preconditions: logits rank, label dtype, shape, range") {
  using doctest::Contains;
  Tensor z = Tensor::zeros({3, 5});
  CHECK_THROWS_WITH_AS(ops::softmax_cross_entropy(Tensor::zeros({15}), Tensor::zeros({3})),
                       Contains("2 dims"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::softmax_cross_entropy(z, Tensor::zeros({3})), Contains("f32"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::softmax_cross_entropy(z, Tensor::from_i32({1, 0}, {2})),
                       Contains("int32 [3]"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::softmax_cross_entropy(z, Tensor::from_i32({1, 0, 2}, {3, 1})),
                       Contains("int32 [3]"), std::invalid_argument);
  // CASES 5: the error names the bad label; a negative one is refused the same way.
  CHECK_THROWS_WITH_AS(ops::softmax_cross_entropy(z, Tensor::from_i32({1, 0, 5}, {3})),
                       Contains("label 5"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(ops::softmax_cross_entropy(z, Tensor::from_i32({1, -1, 0}, {3})),
                       Contains("label -1"), std::invalid_argument);
}
