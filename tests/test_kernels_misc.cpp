// Tests of the CPU kernels that are not losses, and of properties shared by all of them:
// the label check (CASE 5), the stable sigmoid (CASE 18), PReLU forward/backward with
// central-difference checks, SGD / Adam / AdamW against PyTorch, and thread-count independence.
//
// Optimizer reference values come from tools/ref_kernels.py (version 1, torch 1.13).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "tests/kernel_checks.hpp"

namespace k = sigmar::kernels;
using kernel_checks::all_finite;
using kernel_checks::central_diff;
using kernel_checks::check_gradient;
using kernel_checks::same_bits;

namespace {

std::vector<float> uniform(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

std::string label_error(const std::vector<int32_t>& y, int64_t C, const char* what) {
  try {
    k::check_labels(y.data(), int64_t(y.size()), C, what);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---- label check and sigmoid --------------------------------------------------------------

TEST_CASE("kernel: check_labels names the bad label (CASE 5)") {
  // 3×5 logits with labels [1, 0, 5]: every loss that indexes by label runs this check first.
  const std::vector<int32_t> y = {1, 0, 5};
  for (const char* what : {"softmax_ce", "center_loss", "snnl", "s2r_loss"}) {
    CAPTURE(what);
    const std::string msg = label_error(y, 5, what);
    CHECK(msg.find("label 5") != std::string::npos);
    CHECK(msg.find("position 2") != std::string::npos);
    CHECK(msg.find(what) != std::string::npos);
  }
  CHECK(label_error({0, -1, 2}, 5, "x").find("label -1") != std::string::npos);
  CHECK(label_error({0, 4, 2}, 5, "x").empty());
  CHECK_THROWS_AS(k::check_labels(y.data(), 3, 0, "x"), std::invalid_argument);
}

TEST_CASE("kernel: stable_sigmoid extremes (CASE 18)") {
  const float xs[5] = {-1000.0f, -89.0f, 0.0f, 89.0f, 1000.0f};
  float s[5], s1ms[5];
  for (int j = 0; j < 5; ++j) {
    s[j] = k::stable_sigmoid(xs[j]);
    s1ms[j] = s[j] * (1.0f - s[j]);
    CHECK(std::isfinite(s[j]));
    CHECK(std::isfinite(s1ms[j]));
  }
  CHECK(s[0] == 0.0f);
  CHECK(s[1] >= 0.0f);
  CHECK(s[1] <= 2.3e-39f);  // e^-89 ≈ 2.2e-39, a float subnormal (or 0 under flush-to-zero)
  CHECK(s[2] == 0.5f);
  CHECK(s[3] == 1.0f);
  CHECK(s[4] == 1.0f);
  CHECK(s1ms[0] == 0.0f);
  CHECK(s1ms[1] <= 2.3e-39f);
  CHECK(s1ms[2] == 0.25f);
  CHECK(s1ms[3] == 0.0f);
  CHECK(s1ms[4] == 0.0f);
  // Infinities and ordinary values.
  CHECK(k::stable_sigmoid(std::numeric_limits<float>::infinity()) == 1.0f);
  CHECK(k::stable_sigmoid(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(k::stable_sigmoid(1.0f) == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-7));
  CHECK(k::stable_sigmoid(-2.5f) == doctest::Approx(1.0 / (1.0 + std::exp(2.5))).epsilon(1e-7));
}

// ---- PReLU --------------------------------------------------------------------------------

TEST_CASE("kernel: prelu forward and the derivative at zero") {
  // [N=2, Ch=2, S=3], per-channel slopes.
  const std::vector<float> x = {-2, 0, 3, -1, 0.5f, 0, 4, -4, 0, 0, -0.5f, 2};
  const std::vector<float> a = {0.25f, -0.5f};
  std::vector<float> y(12), dx(12), da(2);
  k::prelu_forward(x.data(), a.data(), 2, 2, 3, 2, y.data());
  const std::vector<float> want_y = {-0.5f, 0, 3, 0.5f, 0.5f, 0, 4, -1, 0, 0, 0.25f, 2};
  for (int j = 0; j < 12; ++j) CHECK(y[j] == want_y[j]);

  const std::vector<float> dy(12, 1.0f);
  k::prelu_backward(x.data(), a.data(), dy.data(), 2, 2, 3, 2, dx.data(), da.data());
  // At x == 0 the input derivative is the slope (SPEC 1).
  const std::vector<float> want_dx = {0.25f, 0.25f, 1, -0.5f, 1, -0.5f,
                                      1,     0.25f, 0.25f, -0.5f, -0.5f, 1};
  for (int j = 0; j < 12; ++j) CHECK(dx[j] == want_dx[j]);
  CHECK(da[0] == -6.0f);  // x ≤ 0 in channel 0: -2, 0, -4, 0
  CHECK(da[1] == -1.5f);  // channel 1: -1, 0, 0, -0.5
}

TEST_CASE("kernel: prelu gradients match central differences") {
  const int64_t N = 3, Ch = 4, S = 5;
  for (const int64_t num_slopes : {int64_t(1), Ch}) {
    CAPTURE(num_slopes);
    std::vector<float> x = uniform(N * Ch * S, -2, 2, 51);
    // Keep every input at least 0.05 from the kink so ±h never crosses it.
    for (auto& v : x)
      if (std::fabs(v) < 0.05f) v = v < 0 ? v - 0.05f : v + 0.05f;
    std::vector<float> a = uniform(num_slopes, 0.05f, 0.5f, 52);
    const std::vector<float> dy = uniform(x.size(), -1, 1, 53);
    std::vector<float> dx(x.size()), da(num_slopes);
    k::prelu_backward(x.data(), a.data(), dy.data(), N, Ch, S, num_slopes, dx.data(), da.data());

    // The probe is Σ dy·y, whose gradient is exactly (dx, da).
    std::vector<float> y(x.size());
    const auto probe = [&] {
      k::prelu_forward(x.data(), a.data(), N, Ch, S, num_slopes, y.data());
      double s = 0.0;
      for (size_t j = 0; j < y.size(); ++j) s += double(dy[j]) * double(y[j]);
      return s;
    };
    // Piecewise linear away from the kink: no truncation error; h = 1e-2 keeps the float
    // rounding of y (2^-24·|y|/h ≈ 1e-5) well inside tol = 1e-4.
    check_gradient("prelu dx", dx, central_diff(x, probe, 1e-2f), 1e-4);
    check_gradient("prelu da", da, central_diff(a, probe, 1e-2f), 1e-4);
  }
}

// ---- optimizers ---------------------------------------------------------------------------

namespace {

// tools/ref_kernels.py, optimizers(): five weights, three steps with these gradients.
const std::vector<float> kW0 = {0.5f, -1.25f, 2.0f, 0.0f, -0.75f};
const std::vector<std::vector<float>> kGrads = {{0.1f, -0.2f, 0.3f, -0.4f, 0.5f},
                                                {-0.3f, 0.1f, 0.25f, 0.05f, -0.6f},
                                                {0.2f, 0.2f, -0.1f, 0.3f, 0.15f}};

void check_close(const std::vector<float>& got, const std::vector<float>& want) {
  // Same float operations as PyTorch up to evaluation order: a few ulps of the weights.
  REQUIRE(got.size() == want.size());
  for (size_t j = 0; j < got.size(); ++j)
    CHECK(got[j] == doctest::Approx(want[j]).epsilon(1e-6).scale(1.0));
}

std::vector<float> run_sgd(float lr, float momentum, float wd, bool nesterov) {
  std::vector<float> w = kW0, buf(w.size(), 0.0f);
  for (const auto& g : kGrads)
    k::sgd_step(w.data(), g.data(), buf.data(), int64_t(w.size()), lr, momentum, wd, nesterov);
  return w;
}

std::vector<float> run_adam(float wd, bool decoupled) {
  std::vector<float> w = kW0, m(w.size(), 0.0f), v(w.size(), 0.0f);
  int64_t t = 0;
  for (const auto& g : kGrads)
    k::adam_step(w.data(), g.data(), m.data(), v.data(), int64_t(w.size()), ++t, 0.01f, 0.9f,
                 0.999f, 1e-8f, wd, decoupled);
  return w;
}

}  // namespace

TEST_CASE("kernel: sgd matches PyTorch over three steps") {
  SUBCASE("momentum 0.9, weight decay 0.01") {
    check_close(run_sgd(0.1f, 0.9f, 0.01f, false),
                {0.50710535, -1.22785938, 1.87012863, 0.0687530413, -0.782166183});
  }
  SUBCASE("Nesterov") {
    check_close(run_sgd(0.1f, 0.9f, 0.01f, true),
                {0.504887044, -1.23644578, 1.83240891, 0.0666164011, -0.781525731});
  }
  SUBCASE("plain, weight decay 0.1") {
    check_close(run_sgd(0.05f, 0.0f, 0.1f, false),
                {0.492512286, -1.23641837, 1.94786191, 0.00231300085, -0.741206765});
  }
  SUBCASE("the first momentum step sets the buffer to the gradient") {
    std::vector<float> w = kW0, buf(5, 0.0f);
    k::sgd_step(w.data(), kGrads[0].data(), buf.data(), 5, 0.1f, 0.9f, 0.0f, false);
    CHECK(same_bits(buf.data(), kGrads[0].data(), 5));
  }
}

TEST_CASE("kernel: adam and adamw match PyTorch over three steps") {
  SUBCASE("Adam, L2 weight decay 0.1") {
    check_close(run_adam(0.1f, false),
                {0.49054271, -1.22879434, 1.97150314, 0.0154071515, -0.755750954});
  }
  SUBCASE("AdamW, decoupled weight decay 0.1") {
    check_close(run_adam(0.1f, true),
                {0.493270606, -1.23633993, 1.96828818, 0.01543249, -0.756424844});
  }
  SUBCASE("step count must start at 1") {
    std::vector<float> w = kW0, m(5), v(5);
    CHECK_THROWS_AS(k::adam_step(w.data(), kGrads[0].data(), m.data(), v.data(), 5, 0, 0.01f,
                                 0.9f, 0.999f, 1e-8f, 0.0f, false),
                    std::invalid_argument);
  }
}

// ---- determinism --------------------------------------------------------------------------

TEST_CASE("kernel: results do not depend on the number of threads") {
  // Bigger than one thread's share of every parallel loop, with ragged tile edges.
  const int64_t B = 203, D = 37, C = 10;
  const std::vector<float> x = uniform(B * D, -1, 1, 61);
  std::vector<int32_t> y(B);
  for (int64_t i = 0; i < B; ++i) y[i] = int32_t((i * 13 + i / 7) % C);
  const std::vector<float> c = uniform(C * D, -0.5f, 0.5f, 62);
  const std::vector<float> v = uniform(C, 0.5f, 2.0f, 63);
  const std::vector<float> a = uniform(D, 0.1f, 0.3f, 64);
  const std::vector<float> logits = uniform(B * C, -4, 4, 65);

  struct Outputs {
    float ce, center, snnl, s2r;
    std::vector<float> g_ce, g_center, g_snnl, g_s2r, dx, da, centers;
  };
  const auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Outputs o;
    o.g_ce.resize(B * C);
    o.g_center.resize(B * D);
    o.g_snnl.resize(B * D);
    o.g_s2r.resize(B * D);
    o.dx.resize(B * D);
    o.da.resize(D);
    o.ce = k::softmax_ce(logits.data(), y.data(), B, C, o.g_ce.data());
    o.center = k::center_loss(x.data(), y.data(), c.data(), B, D, o.g_center.data());
    o.snnl = k::snnl(x.data(), y.data(), B, D, 0.5f, o.g_snnl.data());
    o.s2r = k::s2r_loss(x.data(), y.data(), c.data(), v.data(), B, D, {}, o.g_s2r.data());
    // PReLU over [B, D, 1] with per-channel slopes: da sums over B samples.
    k::prelu_backward(x.data(), a.data(), x.data(), B, D, 1, D, o.dx.data(), o.da.data());
    o.centers = c;
    k::center_update(x.data(), y.data(), o.centers.data(), B, D, C, 0.3f);
    return o;
  };
  const int before = omp_get_max_threads();
  const Outputs one = run(1), three = run(3);
  omp_set_num_threads(before);

  CHECK(one.ce == three.ce);
  CHECK(one.center == three.center);
  CHECK(one.snnl == three.snnl);
  CHECK(one.s2r == three.s2r);
  CHECK(same_bits(one.g_ce.data(), three.g_ce.data(), one.g_ce.size()));
  CHECK(same_bits(one.g_center.data(), three.g_center.data(), one.g_center.size()));
  CHECK(same_bits(one.g_snnl.data(), three.g_snnl.data(), one.g_snnl.size()));
  CHECK(same_bits(one.g_s2r.data(), three.g_s2r.data(), one.g_s2r.size()));
  CHECK(same_bits(one.dx.data(), three.dx.data(), one.dx.size()));
  CHECK(same_bits(one.da.data(), three.da.data(), one.da.size()));
  CHECK(same_bits(one.centers.data(), three.centers.data(), one.centers.size()));
  CHECK(all_finite(one.g_snnl));
}
