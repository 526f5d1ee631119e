// Tests of the CPU loss kernels (kernels/softmax_ce.cpp, center.cpp, snnl.cpp, s2r.cpp): the
// SPEC worked examples, the CASES.md values, central-difference gradient checks on a batch with
// a singleton and an absent class, invariances, and PyTorch reference values.
//
// PyTorch values come from tools/ref_kernels.py (version 1, torch 1.13); rerun it to
// regenerate them. Tolerances are relative to max(|a|, |b|, 1) unless a comment says otherwise.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/kernels.hpp"
#include "tests/kernel_checks.hpp"

namespace k = sigmar::kernels;
using kernel_checks::all_finite;
using kernel_checks::central_diff;
using kernel_checks::check_gradient;
using kernel_checks::same_bits;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// The gradient-check batch: B = 7 samples, C = 4 classes; class 2 occurs once (sample 3) and
// class 3 not at all, so every "empty set" branch is on the path.
const std::vector<int32_t> kLabels = {0, 1, 0, 2, 1, 0, 1};
constexpr int64_t kB = 7, kC = 4;

std::vector<float> uniform(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// ℓ_i of SPEC 2.3 in double, written independently of the kernel (plain loops, no shifts
// needed at these sizes), for the 1-D worked example.
double snnl_term_1d(const std::vector<double>& x, const std::vector<int>& y, size_t i,
                    double t) {
  double all = 0.0, pos = 0.0;
  for (size_t k = 0; k < x.size(); ++k) {
    if (k == i) continue;
    const double e = std::exp(-(x[i] - x[k]) * (x[i] - x[k]) / t);
    all += e;
    if (y[k] == y[i]) pos += e;
  }
  return std::log(all) - std::log(pos);
}

// The SPEC 2.2 worked example.
const std::vector<float> kEx22Centers = {0, 0, 1, 1, 5, -5};
const std::vector<float> kEx22X = {1, 0, 3, 0, 5, 5};
const std::vector<int32_t> kEx22Labels = {0, 0, 1};

}  // namespace

// ---- softmax cross-entropy ----------------------------------------------------------------

TEST_CASE("kernel: softmax_ce extreme logits (CASES 1-4)") {
  SUBCASE("case 1: huge equal logits") {
    const std::vector<float> z = {1e8f, 1e8f};
    const std::vector<int32_t> y = {1};
    std::vector<float> g(2);
    CHECK(k::softmax_ce(z.data(), y.data(), 1, 2, g.data()) ==
          doctest::Approx(0.6931472).epsilon(1e-6));
    CHECK(g[0] == doctest::Approx(0.5).epsilon(1e-6));
    CHECK(g[1] == doctest::Approx(-0.5).epsilon(1e-6));
  }
  SUBCASE("case 2: one dominant logit") {
    const std::vector<float> z = {-100, -300, -300, -300};
    const std::vector<int32_t> y = {1};
    std::vector<float> g(4);
    CHECK(k::softmax_ce(z.data(), y.data(), 1, 4, g.data()) ==
          doctest::Approx(200.0).epsilon(1e-6));
    CHECK(all_finite(g));
    CHECK(g[1] == doctest::Approx(-1.0).epsilon(1e-6));
  }
  SUBCASE("case 3: all equal and very negative") {
    const std::vector<float> z = {-300, -300, -300, -300};
    const std::vector<int32_t> y = {2};
    std::vector<float> g(4);
    CHECK(k::softmax_ce(z.data(), y.data(), 1, 4, g.data()) ==
          doctest::Approx(std::log(4.0)).epsilon(1e-6));
    const float want[4] = {0.25f, 0.25f, -0.75f, 0.25f};
    for (int j = 0; j < 4; ++j) CHECK(g[j] == doctest::Approx(want[j]).epsilon(1e-6));
  }
  SUBCASE("case 4: masked class") {
    const std::vector<float> z = {0.0f, -kInf};
    const std::vector<int32_t> y = {0};
    std::vector<float> g(2, 123.0f);
    CHECK(k::softmax_ce(z.data(), y.data(), 1, 2, g.data()) == 0.0f);
    CHECK(g[0] == 0.0f);
    CHECK(g[1] == 0.0f);
  }
  SUBCASE("-inf on a non-target class keeps a finite target log-prob") {
    const std::vector<float> z = {1.0f, -kInf, 2.0f};
    const std::vector<int32_t> y = {0};
    std::vector<float> g(3);
    const double want = std::log(std::exp(1.0) + std::exp(2.0)) - 1.0;
    CHECK(k::softmax_ce(z.data(), y.data(), 1, 3, g.data()) ==
          doctest::Approx(want).epsilon(1e-6));
    CHECK(all_finite(g));
    CHECK(g[1] == 0.0f);
  }
}

TEST_CASE("kernel: softmax_ce matches PyTorch") {
  // tools/ref_kernels.py, cross_entropy(): float64 torch.nn.functional.cross_entropy.
  const double kCeLoss = 1.95489866698;
  const std::vector<float> kCeGrad = {
      0.0564634009, 0.00764149036, 0.0161770352, -0.0802819265, -0.329320786, 0.0296489391,
      0.219077674,  0.0805941724,  0.0847506969, 0.0936640055,  -0.229818598, 0.0514038961};
  const std::vector<float> z = {1.5, -0.5, 0.25, 3.0, -2.0, 0.0, 2.0, 1.0, 0.1, 0.2, 0.3, -0.4};
  const std::vector<int32_t> y = {3, 0, 2};
  std::vector<float> g(12);
  // fp32 inputs against a float64 reference: a few float ulps, so 1e-6 relative.
  CHECK(k::softmax_ce(z.data(), y.data(), 3, 4, g.data()) ==
        doctest::Approx(kCeLoss).epsilon(1e-6));
  for (size_t j = 0; j < g.size(); ++j)
    CHECK(g[j] == doctest::Approx(kCeGrad[j]).epsilon(1e-6).scale(1e-3));
}

TEST_CASE("kernel: softmax_ce gradient matches central differences") {
  std::vector<float> z = uniform(kB * kC, -3, 3, 11);
  std::vector<float> g(z.size());
  k::softmax_ce(z.data(), kLabels.data(), kB, kC, g.data());
  const auto fd = central_diff(
      z, [&] { return double(k::softmax_ce(z.data(), kLabels.data(), kB, kC, nullptr)); },
      1e-2f);
  check_gradient("softmax_ce", g, fd, 2e-4);
}

TEST_CASE("kernel: softmax_ce permuting the batch permutes the gradient") {
  const std::vector<float> z = uniform(kB * kC, -3, 3, 12);
  std::vector<float> g(z.size());
  const float loss = k::softmax_ce(z.data(), kLabels.data(), kB, kC, g.data());
  const std::vector<int64_t> perm = {4, 2, 6, 0, 3, 5, 1};
  std::vector<float> zp(z.size()), gp(z.size());
  std::vector<int32_t> yp(kB);
  for (int64_t r = 0; r < kB; ++r) {
    yp[r] = kLabels[perm[r]];
    std::memcpy(&zp[r * kC], &z[perm[r] * kC], kC * sizeof(float));
  }
  CHECK(k::softmax_ce(zp.data(), yp.data(), kB, kC, gp.data()) ==
        doctest::Approx(loss).epsilon(1e-6));
  for (int64_t r = 0; r < kB; ++r) CHECK(same_bits(&gp[r * kC], &g[perm[r] * kC], kC));
}

// ---- center loss ------------------------------------------------------------------------

TEST_CASE("kernel: center loss, SPEC 2.2 worked example (CASE 6)") {
  std::vector<float> g(6);
  const float loss =
      k::center_loss(kEx22X.data(), kEx22Labels.data(), kEx22Centers.data(), 3, 2, g.data());
  CHECK(loss == doctest::Approx(7.0).epsilon(1e-6));
  const double want_g[6] = {1.0 / 3, 0, 1, 0, 4.0 / 3, 4.0 / 3};
  for (int j = 0; j < 6; ++j) CHECK(g[j] == doctest::Approx(want_g[j]).epsilon(1e-6));

  // α = 0.5. The kernel has no lr, λ or weight decay argument: nothing the network optimizer
  // is configured with can reach the update (the trainer-level half of CASE 6 is elsewhere).
  std::vector<float> c = kEx22Centers;
  k::center_update(kEx22X.data(), kEx22Labels.data(), c.data(), 3, 2, 3, 0.5f);
  const double want_c[6] = {2.0 / 3, 0, 2, 2, 5, -5};
  for (int j = 0; j < 6; ++j) CHECK(c[j] == doctest::Approx(want_c[j]).epsilon(1e-6));
}

TEST_CASE("kernel: center update leaves an absent class bit-identical (CASE 7)") {
  // Class 2 does not occur in the batch: its center keeps its bits; the others move.
  std::vector<float> c = {0.1f, -0.2f, 1.3f, 1.7f, 5.123f, -5.987f};
  const std::vector<float> before = c;
  k::center_update(kEx22X.data(), kEx22Labels.data(), c.data(), 3, 2, 3, 0.5f);
  CHECK(same_bits(&c[4], &before[4], 2));
  CHECK(c[0] != before[0]);
  CHECK(c[2] != before[2]);
  CHECK(c[3] != before[3]);

  // The same for σ²R's state, centers and variances alike.
  std::vector<float> c2 = before, v = {0.5f, 0.25f, 3.75f};
  const std::vector<float> v_before = v;
  k::s2r_update(kEx22X.data(), kEx22Labels.data(), c2.data(), v.data(), 3, 2, 3, 0.5f);
  CHECK(same_bits(&c2[4], &before[4], 2));
  CHECK(same_bits(&v[2], &v_before[2], 1));
  CHECK(v[0] != v_before[0]);
  CHECK(v[1] != v_before[1]);
}

TEST_CASE("kernel: center loss gradient matches central differences") {
  const int64_t D = 3;
  std::vector<float> x = uniform(kB * D, -2, 2, 21);
  const std::vector<float> c = uniform(kC * D, -1, 1, 22);
  std::vector<float> g(x.size());
  k::center_loss(x.data(), kLabels.data(), c.data(), kB, D, g.data());
  const auto fd = central_diff(
      x, [&] { return double(k::center_loss(x.data(), kLabels.data(), c.data(), kB, D, nullptr)); },
      1e-2f);
  check_gradient("center_loss", g, fd, 2e-4);
}

TEST_CASE("kernel: center loss invariances") {
  const int64_t D = 3;
  const std::vector<float> x = uniform(kB * D, -2, 2, 23);
  const std::vector<float> c = uniform(kC * D, -1, 1, 24);
  std::vector<float> g(x.size());
  const float loss = k::center_loss(x.data(), kLabels.data(), c.data(), kB, D, g.data());

  SUBCASE("duplicating the batch leaves the loss unchanged") {
    std::vector<float> x2 = x;
    x2.insert(x2.end(), x.begin(), x.end());
    std::vector<int32_t> y2 = kLabels;
    y2.insert(y2.end(), kLabels.begin(), kLabels.end());
    CHECK(k::center_loss(x2.data(), y2.data(), c.data(), 2 * kB, D, nullptr) ==
          doctest::Approx(loss).epsilon(1e-6));
  }
  SUBCASE("permuting the batch permutes the gradient") {
    const std::vector<int64_t> perm = {6, 5, 4, 3, 2, 1, 0};
    std::vector<float> xp(x.size()), gp(x.size());
    std::vector<int32_t> yp(kB);
    for (int64_t r = 0; r < kB; ++r) {
      yp[r] = kLabels[perm[r]];
      std::memcpy(&xp[r * D], &x[perm[r] * D], D * sizeof(float));
    }
    CHECK(k::center_loss(xp.data(), yp.data(), c.data(), kB, D, gp.data()) ==
          doctest::Approx(loss).epsilon(1e-6));
    for (int64_t r = 0; r < kB; ++r) CHECK(same_bits(&gp[r * D], &g[perm[r] * D], D));
  }
}

// ---- soft nearest neighbour loss --------------------------------------------------------

TEST_CASE("kernel: snnl, SPEC 2.3 worked example (CASE 10)") {
  const std::vector<double> xd = {0, 1, 2, 4};
  const std::vector<int> yd = {0, 0, 1, 1};
  // The SPEC's ℓ values, from an independent double evaluation of the formula.
  const double want_l[4] = {0.048588, 0.693315, 3.094923, 0.006721};
  for (size_t i = 0; i < 4; ++i)
    CHECK(snnl_term_1d(xd, yd, i, 1.0) == doctest::Approx(want_l[i]).epsilon(2e-6));

  std::vector<float> x = {0, 1, 2, 4};
  std::vector<int32_t> y = {0, 0, 1, 1};
  std::vector<float> g(4);
  CHECK(k::snnl(x.data(), y.data(), 4, 1, 1.0f, g.data()) ==
        doctest::Approx(0.960887).epsilon(1e-6));

  // The kernel returns only the mean; the pairs of ℓ values show up by relabelling, since an
  // anchor's ℓ depends only on its own partner set.
  std::vector<int32_t> first_pair = {0, 0, 1, 2}, second_pair = {0, 1, 2, 2};
  CHECK(k::snnl(x.data(), first_pair.data(), 4, 1, 1.0f, nullptr) ==
        doctest::Approx((0.048588 + 0.693315) / 2).epsilon(2e-6));
  CHECK(k::snnl(x.data(), second_pair.data(), 4, 1, 1.0f, nullptr) ==
        doctest::Approx((3.094923 + 0.006721) / 2).epsilon(2e-6));

  const auto fd = central_diff(
      x, [&] { return double(k::snnl(x.data(), y.data(), 4, 1, 1.0f, nullptr)); }, 1e-2f);
  check_gradient("snnl, SPEC example", g, fd, 2e-4);
}

TEST_CASE("kernel: snnl singleton anchors (CASE 8)") {
  const std::vector<float> x = {0, 0, 1, 0, 0, 1, 1, 1};
  std::vector<float> g(8, 7.0f);
  const std::vector<int32_t> y = {0, 1, 1, 3};
  CHECK(k::snnl(x.data(), y.data(), 4, 2, 1.0f, g.data()) ==
        doctest::Approx(1.861995).epsilon(1e-6));
  CHECK(all_finite(g));

  // No anchor has a partner: loss 0, gradient written as zeros.
  const std::vector<int32_t> none = {0, 1, 2, 3};
  CHECK(k::snnl(x.data(), none.data(), 4, 2, 1.0f, g.data()) == 0.0f);
  for (float v : g) CHECK(v == 0.0f);
}

TEST_CASE("kernel: snnl tiny temperature (CASE 9)") {
  const std::vector<float> x = {0, 3, 1};
  const std::vector<int32_t> y = {0, 0, 1};
  std::vector<float> g(3);
  // ℓ_0 = (9 - 1)/T = 800, ℓ_1 = (9 - 4)/T = 500: the mean is 650, exact in float.
  CHECK(k::snnl(x.data(), y.data(), 3, 1, 0.01f, g.data()) == 650.0f);
  REQUIRE(all_finite(g));
  // By hand: ∂ℓ_0/∂x = (-400, 600, -200) and ∂ℓ_1/∂x = (-600, 200, 400); their mean is
  // (-500, 400, 100), and the e^-500 terms underflow to exactly 0 in double.
  CHECK(g[0] == doctest::Approx(-500.0).epsilon(1e-6));
  CHECK(g[1] == doctest::Approx(400.0).epsilon(1e-6));
  CHECK(g[2] == doctest::Approx(100.0).epsilon(1e-6));
}

TEST_CASE("kernel: snnl excludes self by index, not by zero distance") {
  // Samples 0 and 1 coincide and share a class: they are each other's partners at d = 0.
  const std::vector<float> x = {0, 0, 1};
  const std::vector<int32_t> y = {0, 0, 1};
  // ℓ_0 = ℓ_1 = log(1 + e^{-1}) - log(1).
  CHECK(k::snnl(x.data(), y.data(), 3, 1, 1.0f, nullptr) ==
        doctest::Approx(std::log1p(std::exp(-1.0))).epsilon(1e-6));
}

TEST_CASE("kernel: snnl matches PyTorch") {
  // tools/ref_kernels.py, snnl(): SPEC 2.3 written in torch (float64), autograd gradient.
  const double kSnnlLoss = 0.712509700413;
  const std::vector<float> kSnnlGrad = {
      -0.0904769201, 0.0082995496,  -0.0224647554, 0.136349025,   0.367972562, -1.01467635,
      0.00129406307, -0.0099097795, 0.000274483581, -0.698159491, 0.298094444, 0.404398097,
      0.148876169,   0.00894846282, 0.00433561218,  0.502117154,  -0.673405238, 0.628132914};
  const std::vector<float> x = {0.0,  1.0, -0.5, 0.5,  0.75, 0.0, 2.0,  -1.0, 1.0,
                                1.5, -0.5, 1.25, -1.0, 0.5,  0.5, 0.25, 0.0,  2.0};
  const std::vector<int32_t> y = {0, 0, 1, 1, 2, 0};
  std::vector<float> g(18);
  // fp32 inputs, double inside: agreement to a few float ulps.
  CHECK(k::snnl(x.data(), y.data(), 6, 3, 0.7f, g.data()) ==
        doctest::Approx(kSnnlLoss).epsilon(1e-6));
  for (size_t j = 0; j < g.size(); ++j)
    CHECK(g[j] == doctest::Approx(kSnnlGrad[j]).epsilon(1e-5).scale(1e-2));
}

TEST_CASE("kernel: snnl gradient matches central differences") {
  const int64_t D = 3;
  for (const float t : {1.0f, 0.5f}) {
    CAPTURE(t);
    std::vector<float> x = uniform(kB * D, -1, 1, 31);
    std::vector<float> g(x.size());
    k::snnl(x.data(), kLabels.data(), kB, D, t, g.data());
    const auto fd = central_diff(
        x, [&] { return double(k::snnl(x.data(), kLabels.data(), kB, D, t, nullptr)); },
        1e-2f * t);
    // h ∝ T: the loss varies on the scale of d/T, so this keeps the truncation error level.
    check_gradient("snnl", g, fd, 2e-4);
  }
}

namespace {

// SNNL and its gradient by the chain rule, anchor by anchor, in plain double loops: no
// blocking, no shifts beyond the per-anchor maximum, no symmetrisation.
double snnl_naive(const std::vector<float>& x, const std::vector<int32_t>& y, int64_t B,
                  int64_t D, double t, std::vector<double>& grad) {
  std::vector<double> d(B * B);
  for (int64_t i = 0; i < B; ++i)
    for (int64_t k = 0; k < B; ++k) {
      double s = 0.0;
      for (int64_t j = 0; j < D; ++j) s += std::pow(double(x[i * D + j]) - x[k * D + j], 2);
      d[i * B + k] = s;
    }
  std::vector<int64_t> anchors;
  for (int64_t i = 0; i < B; ++i)
    for (int64_t k = 0; k < B; ++k)
      if (k != i && y[k] == y[i]) {
        anchors.push_back(i);
        break;
      }
  grad.assign(B * D, 0.0);
  if (anchors.empty()) return 0.0;
  const double n = double(anchors.size());
  double total = 0.0;
  for (const int64_t i : anchors) {
    double top = -1e300;
    for (int64_t k = 0; k < B; ++k)
      if (k != i) top = std::max(top, -d[i * B + k] / t);
    double all = 0.0, pos = 0.0;
    for (int64_t k = 0; k < B; ++k) {
      if (k == i) continue;
      const double e = std::exp(-d[i * B + k] / t - top);
      all += e;
      if (y[k] == y[i]) pos += e;
    }
    total += std::log(all) - std::log(pos);
    for (int64_t k = 0; k < B; ++k) {
      if (k == i) continue;
      const double e = std::exp(-d[i * B + k] / t - top);
      const double coef = -(e / all - (y[k] == y[i] ? e / pos : 0.0)) / (t * n);
      for (int64_t j = 0; j < D; ++j) {
        const double diff = 2.0 * (double(x[i * D + j]) - x[k * D + j]);
        grad[i * D + j] += coef * diff;
        grad[k * D + j] -= coef * diff;
      }
    }
  }
  return total / n;
}

}  // namespace

TEST_CASE("kernel: snnl at a blocked size matches a naive double evaluation") {
  // B = 203 covers full 16-wide column blocks and lanes plus ragged tails; two singletons.
  const int64_t B = 203, D = 19;
  const std::vector<float> x = uniform(B * D, -1, 1, 34);
  std::vector<int32_t> y(B);
  for (int64_t i = 0; i < B; ++i) y[i] = int32_t((i * 5 + i / 11) % 9);
  y[17] = 11;
  y[150] = 12;
  std::vector<float> g(x.size());
  std::vector<double> want_g;
  const double want = snnl_naive(x, y, B, D, double(0.3f), want_g);
  // Both in double from the same float inputs: agreement to float rounding of the outputs.
  CHECK(k::snnl(x.data(), y.data(), B, D, 0.3f, g.data()) ==
        doctest::Approx(want).epsilon(1e-6));
  double worst = 0.0, gmax = 0.0;
  for (size_t j = 0; j < g.size(); ++j) {
    worst = std::max(worst, std::fabs(g[j] - want_g[j]));
    gmax = std::max(gmax, std::fabs(want_g[j]));
  }
  // Per element: float rounding of each gradient (2^-24 relative) on the largest element's
  // scale, with a factor 4 for the different summation orders in double.
  CHECK(worst <= 4 * 6e-8 * gmax);
}

TEST_CASE("kernel: snnl permuting the batch permutes the gradient") {
  const int64_t D = 5, B = 40;
  const std::vector<float> x = uniform(B * D, -1, 1, 32);
  std::vector<int32_t> y(B);
  for (int64_t i = 0; i < B; ++i) y[i] = int32_t((i * 7) % 6);
  y[3] = 9;  // a singleton
  std::vector<float> g(x.size());
  const float loss = k::snnl(x.data(), y.data(), B, D, 0.8f, g.data());

  std::vector<int64_t> perm(B);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(33));
  std::vector<float> xp(x.size()), gp(x.size());
  std::vector<int32_t> yp(B);
  for (int64_t r = 0; r < B; ++r) {
    yp[r] = y[perm[r]];
    std::memcpy(&xp[r * D], &x[perm[r] * D], D * sizeof(float));
  }
  // Sums over k run in a different order after the permutation: equal to double rounding,
  // so a float ulp or two at most.
  CHECK(k::snnl(xp.data(), yp.data(), B, D, 0.8f, gp.data()) ==
        doctest::Approx(loss).epsilon(1e-6));
  for (int64_t r = 0; r < B; ++r)
    for (int64_t d = 0; d < D; ++d)
      CHECK(gp[r * D + d] == doctest::Approx(g[perm[r] * D + d]).epsilon(1e-6).scale(1e-3));
}

// ---- σ²R ----------------------------------------------------------------------------------

TEST_CASE("kernel: s2r sigmoid-weighted loss reduces to center loss as k -> 0 (CASE 20)") {
  // SPEC 2.2 example with a fresh state (v = 0). With k = 1e-12 the factor is
  // w = 2σ(k·z) ≈ 1 + k·z/2, and z = d/ε reaches 3.2e7, so L - 7 ≈ k·Σd²/(4Bε) = 9.2e-5:
  // 1.3e-5 relative. The test allows that analytic bound (2e-5) for v = 0 ...
  const std::vector<float> v0 = {0, 0, 0};
  k::S2RParams p;
  p.slope = 1e-12f;
  std::vector<float> g(6);
  const float loss = k::s2r_loss(kEx22X.data(), kEx22Labels.data(), kEx22Centers.data(),
                                 v0.data(), 3, 2, p, g.data());
  CHECK(loss == doctest::Approx(7.0).epsilon(2e-5));
  // ... and with unit variances (z of order d), or k = 1e-15, it is 7.0 to fp32 precision.
  const std::vector<float> v1 = {1, 1, 1};
  CHECK(k::s2r_loss(kEx22X.data(), kEx22Labels.data(), kEx22Centers.data(), v1.data(), 3, 2,
                    p, nullptr) == doctest::Approx(7.0).epsilon(1e-6));
  p.slope = 1e-15f;
  CHECK(k::s2r_loss(kEx22X.data(), kEx22Labels.data(), kEx22Centers.data(), v0.data(), 3, 2,
                    p, g.data()) == doctest::Approx(7.0).epsilon(1e-6));
  const double want_g[6] = {1.0 / 3, 0, 1, 0, 4.0 / 3, 4.0 / 3};
  for (int j = 0; j < 6; ++j) CHECK(g[j] == doctest::Approx(want_g[j]).epsilon(1e-6));
}

TEST_CASE("kernel: s2r far outlier stays finite and exact (CASE 19)") {
  // Four 2-D samples; sample 0 sits 1e4 from its center along x.
  const std::vector<float> c = {1.0f, -2.0f, 0.5f, 0.5f};
  const std::vector<int32_t> y = {0, 0, 1, 1};
  std::vector<float> x = {1.0f + 1e4f, -2.0f, 1.5f, -1.0f, 0.0f, 1.0f, 1.25f, 0.25f};
  for (const float var : {1.0f, 5e7f}) {
    // var = 1: the outlier's sigmoid is saturated (k·z ≈ 1e8); var = 5e7: k·z = 1, where the
    // d·∂w/∂d term is of the same order as w.
    CAPTURE(var);
    const std::vector<float> v = {var, 2.0f};
    k::S2RParams p;
    std::vector<float> g(8);
    const float loss = k::s2r_loss(x.data(), y.data(), c.data(), v.data(), 4, 2, p, g.data());
    CHECK(std::isfinite(loss));
    REQUIRE(all_finite(g));

    // Central differences on the outlier's two coordinates, with h = 1 (float spacing at 1e4
    // is 1e-3). The loss is ~2e7, rounded to float (±1), so the probe's error is ~0.5 against
    // a gradient of ~5e3: 1e-4 relative; tol 1e-3.
    std::vector<float> probe = {x[0], x[1]};
    const auto fd = central_diff(
        probe,
        [&] {
          std::vector<float> xx = x;
          xx[0] = probe[0];
          xx[1] = probe[1];
          return double(k::s2r_loss(xx.data(), y.data(), c.data(), v.data(), 4, 2, p, nullptr));
        },
        1.0f);
    check_gradient("s2r outlier", {g[0], g[1]}, fd, 1e-3);
  }

  // Extreme slope: |k·z| ≈ 1e8·1e22 = 1e30 and beyond; no inf·0 anywhere.
  const std::vector<float> v = {1.0f, 2.0f};
  k::S2RParams p;
  p.slope = 1e22f;
  std::vector<float> g(8);
  CHECK(std::isfinite(k::s2r_loss(x.data(), y.data(), c.data(), v.data(), 4, 2, p, g.data())));
  CHECK(all_finite(g));
  p.slope = 1e30f;
  CHECK(std::isfinite(k::s2r_loss(x.data(), y.data(), c.data(), v.data(), 4, 2, p, g.data())));
  CHECK(all_finite(g));
}

namespace {

// σ²R inputs for the gradient checks: variances of the order of the center errors so that
// k·z spans the sigmoid's curved range.
struct S2RBatch {
  int64_t D = 3;
  std::vector<float> x = uniform(kB * 3, -2, 2, 41);
  std::vector<float> c = uniform(kC * 3, -1, 1, 42);
  std::vector<float> v = {1.5f, 0.8f, 2.0f, 1.0f};
};

}  // namespace

TEST_CASE("kernel: s2r full gradient matches central differences; detached differs by the "
          "SPEC term") {
  S2RBatch b;
  for (const float slope : {1.0f, 3.0f}) {
    CAPTURE(slope);
    k::S2RParams full, det;
    full.slope = det.slope = slope;
    det.detached = true;
    std::vector<float> g_full(b.x.size()), g_det(b.x.size());
    const float l_full = k::s2r_loss(b.x.data(), kLabels.data(), b.c.data(), b.v.data(), kB,
                                     b.D, full, g_full.data());
    const float l_det = k::s2r_loss(b.x.data(), kLabels.data(), b.c.data(), b.v.data(), kB, b.D,
                                    det, g_det.data());
    // The option changes only the gradient.
    CHECK(l_full == l_det);

    const auto fd = central_diff(
        b.x,
        [&] {
          return double(k::s2r_loss(b.x.data(), kLabels.data(), b.c.data(), b.v.data(), kB, b.D,
                                    full, nullptr));
        },
        1e-2f);
    check_gradient("s2r full", g_full, fd, 2e-4);

    // full - detached = (1/B)·d_i·∂w_i/∂d_i·(x_i - c_y), evaluated here in double. Both
    // gradients are rounded to float, so the difference is exact to ~2 ulps of the larger.
    for (int64_t i = 0; i < kB; ++i) {
      const float* xi = &b.x[i * b.D];
      const float* ci = &b.c[kLabels[i] * b.D];
      const double var = b.v[kLabels[i]], eps = 1e-6;
      double d = 0.0;
      for (int64_t j = 0; j < b.D; ++j) d += (double(xi[j]) - ci[j]) * (double(xi[j]) - ci[j]);
      const double s = 1.0 / (1.0 + std::exp(-slope * (d - var) / (var + eps)));
      const double dw = 2.0 * slope * s * (1.0 - s) / (var + eps);
      for (int64_t j = 0; j < b.D; ++j) {
        const double term = d * dw * (double(xi[j]) - ci[j]) / double(kB);
        const double got = double(g_full[i * b.D + j]) - double(g_det[i * b.D + j]);
        const double ulp = std::max(std::fabs(g_full[i * b.D + j]), std::fabs(g_det[i * b.D + j]));
        CHECK(std::fabs(got - term) <= 2.5e-7 * ulp + 1e-12);
      }
    }
  }
}

TEST_CASE("kernel: s2r invariances") {
  S2RBatch b;
  k::S2RParams p;
  std::vector<float> g(b.x.size());
  const float loss =
      k::s2r_loss(b.x.data(), kLabels.data(), b.c.data(), b.v.data(), kB, b.D, p, g.data());

  SUBCASE("duplicating the batch leaves the loss unchanged") {
    std::vector<float> x2 = b.x;
    x2.insert(x2.end(), b.x.begin(), b.x.end());
    std::vector<int32_t> y2 = kLabels;
    y2.insert(y2.end(), kLabels.begin(), kLabels.end());
    CHECK(k::s2r_loss(x2.data(), y2.data(), b.c.data(), b.v.data(), 2 * kB, b.D, p, nullptr) ==
          doctest::Approx(loss).epsilon(1e-6));
  }
  SUBCASE("permuting the batch permutes the gradient") {
    const std::vector<int64_t> perm = {2, 0, 1, 6, 3, 5, 4};
    std::vector<float> xp(b.x.size()), gp(b.x.size());
    std::vector<int32_t> yp(kB);
    for (int64_t r = 0; r < kB; ++r) {
      yp[r] = kLabels[perm[r]];
      std::memcpy(&xp[r * b.D], &b.x[perm[r] * b.D], b.D * sizeof(float));
    }
    CHECK(k::s2r_loss(xp.data(), yp.data(), b.c.data(), b.v.data(), kB, b.D, p, gp.data()) ==
          doctest::Approx(loss).epsilon(1e-6));
    for (int64_t r = 0; r < kB; ++r) CHECK(same_bits(&gp[r * b.D], &g[perm[r] * b.D], b.D));
  }
}

TEST_CASE("kernel: s2r update, SPEC 2.2 example with variances") {
  // Centers move exactly as center_update; variances by the same rule on d_i computed from
  // the OLD centers: class 0 has d = 1, 9 and n = 2; class 1 has d = 32 and n = 1.
  std::vector<float> c = kEx22Centers, v = {0.0f, 4.0f, 7.0f};
  k::s2r_update(kEx22X.data(), kEx22Labels.data(), c.data(), v.data(), 3, 2, 3, 0.5f);
  const double want_c[6] = {2.0 / 3, 0, 2, 2, 5, -5};
  for (int j = 0; j < 6; ++j) CHECK(c[j] == doctest::Approx(want_c[j]).epsilon(1e-6));
  // v0 = 0 - 0.5·((0 - 1) + (0 - 9))/3 = 5/3; v1 = 4 - 0.5·(4 - 32)/2 = 11; v2 untouched.
  CHECK(v[0] == doctest::Approx(5.0 / 3).epsilon(1e-6));
  CHECK(v[1] == doctest::Approx(11.0).epsilon(1e-6));
  CHECK(v[2] == 7.0f);
}
