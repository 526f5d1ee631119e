// The CUDA backend and our GPU kernels, each against the CPU: the CPU backend for library-backed
// ops (cuDNN, cuBLAS), the kernels' CPU twins for ours, and the worked values of SPEC.md and
// CASES.md (1–5, 8–14, 18–19, plus 20) computed on the GPU.
//
// Every case is named "cuda: ..." and is skipped, not passed, where no GPU answers; the reason
// is printed once on stderr. One case runs only without a GPU: it checks that asking for the
// CUDA backend then fails with that reason.
//
// Inputs are small integers where the math is then exact in float (GEMMs, sums of few terms),
// so those comparisons are bitwise; elsewhere each tolerance says where its size comes from.
// Shapes are odd and non-square so that a transposed index or a swapped dimension shows.
#include <doctest/doctest.h>

#include "engine/backend.hpp"
#include "engine/ops.hpp"
#include "engine/tensor.hpp"
#include "kernels/kernels.hpp"

#if defined(SIGMAR_CUDA)
#include "engine/cuda/cuda_backend.hpp"
#include "kernels/kernels_cuda.cuh"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace sigmar;

namespace {

// ---- skipping without a GPU ------------------------------------------------------------

bool gpu_ready() {
  static const bool ready = [] {
    std::string why;
    const bool ok = cuda_available(&why);
    if (!ok)
      std::fprintf(stderr, "[sigmar-tests] skipping every \"cuda:\" test case: %s\n",
                   why.c_str());
    return ok;
  }();
  return ready;
}

#define CUDA_CASE(name) TEST_CASE("cuda: " name * doctest::skip(!gpu_ready()))

// ---- inputs --------------------------------------------------------------------------------

// A small deterministic generator (LCG), so every run and every machine sees the same data.
struct Lcg {
  uint32_t s;
  uint32_t next() { return s = s * 1664525u + 1013904223u; }
  double unit() { return (next() >> 8) * (1.0 / 16777216.0); }  // [0, 1)
};

std::vector<float> ints(size_t n, uint32_t seed, int lo = -3, int hi = 3) {
  Lcg g{seed};
  std::vector<float> v(n);
  for (auto& x : v) x = float(lo + int(g.next() % uint32_t(hi - lo + 1)));
  return v;
}

std::vector<float> reals(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  Lcg g{seed};
  std::vector<float> v(n);
  for (auto& x : v) x = float(lo + (hi - lo) * g.unit());
  return v;
}

std::vector<int32_t> classes(size_t n, uint32_t seed, int C) {
  Lcg g{seed};
  std::vector<int32_t> v(n);
  for (auto& y : v) y = int32_t(g.next() % uint32_t(C));
  return v;
}

Tensor cpu_t(const std::vector<float>& v, const Shape& s) { return Tensor::from(v, s); }
Tensor gpu_t(const std::vector<float>& v, const Shape& s) {
  return Tensor::from(v, s, Device::cuda);
}
Tensor cpu_i(const std::vector<int32_t>& v) {
  return Tensor::from_i32(v, {int64_t(v.size())});
}
Tensor gpu_i(const std::vector<int32_t>& v) {
  return Tensor::from_i32(v, {int64_t(v.size())}, Device::cuda);
}
std::vector<float> host(const Tensor& t) { return t.to_vector(); }
float scalar(const Tensor& t) { return t.to_vector().at(0); }

Backend& cpu() { return backend_for(Device::cpu); }
Backend& gpu() { return backend_for(Device::cuda); }

// ---- comparisons ---------------------------------------------------------------------------

// Every element within atol + rtol·|want|; reports the worst element and how much of its
// limit it used, so a tolerance that is nearly exhausted shows before it fails.
void check_close(const std::vector<float>& got, const std::vector<float>& want, double rtol,
                 double atol, const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what << ": sizes differ");
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double limit = atol + rtol * std::fabs(double(want[i]));
    double used = std::fabs(double(got[i]) - double(want[i])) / limit;
    if (std::isnan(got[i]) != std::isnan(want[i])) used = INFINITY;
    if (std::isnan(got[i]) && std::isnan(want[i])) used = 0.0;
    if (!(used <= worst)) {
      worst = used;
      at = i;
    }
  }
  INFO(what << ": worst element " << at << " got " << (got.empty() ? 0.f : got[at])
            << " want " << (want.empty() ? 0.f : want[at]) << ", " << 100.0 * worst
            << "% of the limit");
  CHECK(worst <= 1.0);
}

// Every element within frac·max(1, max|want|): for results whose rounding error scales with
// the largest value of the tensor rather than with each element (FFT and Winograd
// convolutions, long sums of terms of both signs).
void check_close_to_max(const std::vector<float>& got, const std::vector<float>& want,
                        double frac, const std::string& what) {
  double peak = 1.0;
  for (float v : want) peak = std::max(peak, std::fabs(double(v)));
  check_close(got, want, 0.0, frac * peak, what + " (limit " + std::to_string(frac) +
                                               " of max |value| " + std::to_string(peak) + ")");
}

// Bit-for-bit equality (exact integer math, determinism).
void check_bits(const std::vector<float>& got, const std::vector<float>& want,
                const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what << ": sizes differ");
  size_t diff = 0, first = got.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      if (diff++ == 0) first = i;
    }
  INFO(what << ": " << diff << " elements differ, first at " << first);
  CHECK(diff == 0);
}

// Central differences of a float-valued function of v, in double, with the step actually taken.
std::vector<double> central_diff(std::vector<float>& v, const std::function<double()>& f,
                                 float h) {
  std::vector<double> out(v.size());
  for (size_t j = 0; j < v.size(); ++j) {
    const float keep = v[j];
    v[j] = keep + h;
    const double up_step = double(v[j]) - keep, up = f();
    v[j] = keep - h;
    const double down_step = keep - double(v[j]), down = f();
    v[j] = keep;
    out[j] = (up - down) / (up_step + down_step);
  }
  return out;
}

// |analytic − numeric| / max(|a|, |b|, 1) ≤ tol for every element.
void check_gradient(const std::vector<float>& analytic, const std::vector<double>& numeric,
                    double tol, const std::string& what) {
  REQUIRE(analytic.size() == numeric.size());
  double worst = 0.0;
  for (size_t j = 0; j < analytic.size(); ++j) {
    const double scale = std::max({std::fabs(double(analytic[j])), std::fabs(numeric[j]), 1.0});
    worst = std::max(worst, std::fabs(double(analytic[j]) - numeric[j]) / scale);
  }
  INFO(what << ": finite-difference error " << worst << " (" << 100.0 * worst / tol
            << "% of " << tol << ")");
  CHECK(worst <= tol);
}

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// Sets deterministic mode for one scope.
struct DeterministicScope {
  bool before = deterministic();
  explicit DeterministicScope(bool on) { set_deterministic(on); }
  ~DeterministicScope() { set_deterministic(before); }
};

}  // namespace

// ---- the runtime -------------------------------------------------------------------------------

TEST_CASE("cuda: without a GPU the CUDA backend refuses, naming the reason" *
          doctest::skip(gpu_ready())) {
  std::string why;
  REQUIRE_FALSE(cuda_available(&why));
  CHECK_FALSE(why.empty());
  // The backend and every device allocation fail with a message that carries the reason.
  try {
    backend_for(Device::cuda);
    FAIL("backend_for(Device::cuda) returned without a GPU");
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    MESSAGE("backend_for(cuda) says: " << msg);
    CHECK((msg.find(why) != std::string::npos || msg.find("without CUDA") != std::string::npos));
  }
  CHECK_THROWS_AS(Tensor::zeros({3}, Device::cuda), std::runtime_error);
}

CUDA_CASE("describe() names the GPU and the library versions") {
  const std::string d = gpu().describe();
  MESSAGE(d);
  CHECK(gpu().device() == Device::cuda);
  for (const char* part : {"compute capability", "CUDA runtime", "driver", "cuDNN", "cuBLAS"})
    CHECK_MESSAGE(d.find(part) != std::string::npos, "missing: " << part);
}

// ---- elementwise and pooling ---------------------------------------------------------------

CUDA_CASE("elementwise ops and global average pool match the CPU backend") {
  const Shape s{3, 5, 7};
  const auto a = ints(105, 1), b = ints(105, 2);
  Tensor ga = gpu_t(a, s), gb = gpu_t(b, s), ca = cpu_t(a, s), cb = cpu_t(b, s);

  // Integer inputs: sums and small products are exact, so everything is bitwise.
  check_bits(host(gpu().add(ga, gb)), host(cpu().add(ca, cb)), "add");
  check_bits(host(gpu().add_scaled(ga, gb, -2.0f)), host(cpu().add_scaled(ca, cb, -2.0f)),
             "add_scaled");
  check_bits(host(gpu().scale_by(ga, gpu_t({3.0f}, {1}))),
             host(cpu().scale_by(ca, cpu_t({3.0f}, {1}))), "scale_by");
  Tensor acc = gpu_t(a, s);
  gpu().add_inplace(acc, gb);
  check_bits(host(acc), host(cpu().add(ca, cb)), "add_inplace");
  gpu().fill(acc, 2.5f);
  check_bits(host(acc), std::vector<float>(105, 2.5f), "fill");

  // ReLU: inputs include exact zeros, where the derivative is 0 (SPEC 1).
  const auto dy = ints(105, 3);
  check_bits(host(gpu().relu_forward(ga)), host(cpu().relu_forward(ca)), "relu forward");
  check_bits(host(gpu().relu_backward(ga, gpu_t(dy, s))),
             host(cpu().relu_backward(ca, cpu_t(dy, s))), "relu backward");

  // Global average pool [2,3,5,7] -> [2,3]: the means of 35 integers differ from the CPU's
  // by at most a rounding of the final division.
  const Shape xs{2, 3, 5, 7};
  const auto x = ints(210, 4), g = ints(6, 5);
  check_close(host(gpu().global_avgpool_forward(gpu_t(x, xs))),
              host(cpu().global_avgpool_forward(cpu_t(x, xs))), 1e-6, 1e-7, "avgpool fwd");
  check_close(host(gpu().global_avgpool_backward(gpu_t(g, {2, 3}), xs)),
              host(cpu().global_avgpool_backward(cpu_t(g, {2, 3}), xs)), 1e-6, 1e-7,
              "avgpool bwd");
}

// ---- convolution ---------------------------------------------------------------------------

namespace {

// Forward, dx, dw and db on both backends. Integer inputs make the direct and GEMM
// algorithms exact; cuDNN's FFT and Winograd algorithms are not exact even then (their
// transforms round), with errors of order 1e-6 of the output's largest value, hence a
// limit of 1e-5 of that value. db is our own integer sum: exact.
void compare_conv(const Shape& xs, const Shape& ws, Conv2dArgs args, uint32_t seed,
                  const std::string& what) {
  const auto x = ints(shape_numel(xs), seed), w = ints(shape_numel(ws), seed + 1);
  const auto b = ints(ws[0], seed + 2);
  const Tensor cy = cpu().conv2d_forward(cpu_t(x, xs), cpu_t(w, ws), cpu_t(b, {ws[0]}), args);
  const Tensor gy = gpu().conv2d_forward(gpu_t(x, xs), gpu_t(w, ws), gpu_t(b, {ws[0]}), args);
  REQUIRE(gy.shape() == cy.shape());
  check_close_to_max(host(gy), host(cy), 1e-5, what + " forward");

  const auto dy = ints(cy.numel(), seed + 3);
  const ConvGrads cg = cpu().conv2d_backward(cpu_t(x, xs), cpu_t(w, ws), cpu_t(dy, cy.shape()),
                                             args, true, true, true);
  const ConvGrads gg = gpu().conv2d_backward(gpu_t(x, xs), gpu_t(w, ws), gpu_t(dy, cy.shape()),
                                             args, true, true, true);
  check_close_to_max(host(gg.dx), host(cg.dx), 1e-5, what + " dx");
  check_close_to_max(host(gg.dw), host(cg.dw), 1e-5, what + " dw");
  check_bits(host(gg.db), host(cg.db), what + " db");
}

}  // namespace

CUDA_CASE("convolution forward and backward match the CPU on odd shapes") {
  compare_conv({3, 5, 7, 9}, {4, 5, 3, 2}, {1, 0}, 10, "3x2 kernel, stride 1");
  compare_conv({2, 3, 11, 6}, {5, 3, 3, 3}, {2, 1}, 20, "3x3 kernel, stride 2, pad 1");
  compare_conv({1, 2, 5, 5}, {3, 2, 5, 5}, {1, 2}, 30, "5x5 kernel, pad 2");
  compare_conv({4, 1, 8, 3}, {2, 1, 1, 1}, {1, 0}, 40, "1x1 kernel");
  DeterministicScope det(true);
  compare_conv({3, 5, 7, 9}, {4, 5, 3, 2}, {1, 0}, 50, "deterministic mode");
}

CUDA_CASE("cuDNN workspace follows the batch size up and down (CASE 13)") {
  // conv 3 -> 8, 3x3, pad 1, forward and backward at batch 64, 1, 128, 64: each must run
  // and match the CPU to 1e-4 of each result's largest value (dw and db sum n·120 terms of
  // both signs, so their rounding grows with their size, not with each element).
  const Shape ws{8, 3, 3, 3};
  const auto w = reals(shape_numel(ws), 7), b = reals(8, 8);
  for (int64_t n : {64, 1, 128, 64}) {
    const Shape xs{n, 3, 10, 12};
    const auto x = reals(shape_numel(xs), uint32_t(100 + n));
    const Tensor cy = cpu().conv2d_forward(cpu_t(x, xs), cpu_t(w, ws), cpu_t(b, {8}), {1, 1});
    const Tensor gy = gpu().conv2d_forward(gpu_t(x, xs), gpu_t(w, ws), gpu_t(b, {8}), {1, 1});
    const std::string at = "batch " + std::to_string(n);
    check_close_to_max(host(gy), host(cy), 1e-4, at + " forward");
    const auto dy = reals(cy.numel(), uint32_t(200 + n));
    const ConvGrads cg = cpu().conv2d_backward(cpu_t(x, xs), cpu_t(w, ws),
                                               cpu_t(dy, cy.shape()), {1, 1}, true, true, true);
    const ConvGrads gg = gpu().conv2d_backward(gpu_t(x, xs), gpu_t(w, ws),
                                               gpu_t(dy, cy.shape()), {1, 1}, true, true, true);
    check_close_to_max(host(gg.dx), host(cg.dx), 1e-4, at + " dx");
    check_close_to_max(host(gg.dw), host(cg.dw), 1e-4, at + " dw");
    check_close_to_max(host(gg.db), host(cg.db), 1e-4, at + " db");
  }
#if defined(SIGMAR_CUDA)
  auto& be = static_cast<cuda::CudaBackend&>(gpu());
  MESSAGE("cuDNN workspace after CASE 13: " << be.conv_workspace_bytes() << " bytes, "
                                            << be.cached_conv_algorithms() << " cached choices");
#endif
}

// ---- max pooling -----------------------------------------------------------------------------

CUDA_CASE("max-pool matches the CPU without ties, overlapping windows or not") {
  for (PoolArgs args : {PoolArgs{2, 2}, PoolArgs{3, 2}, PoolArgs{3, 1}}) {
    const Shape xs{2, 3, 9, 7};
    // Distinct values (a permutation of 0..n-1): no ties, so the argmax is unambiguous.
    std::vector<float> x(static_cast<size_t>(shape_numel(xs)));
    for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 7919) % x.size());
    const Tensor cy = cpu().maxpool_forward(cpu_t(x, xs), args);
    const Tensor gy = gpu().maxpool_forward(gpu_t(x, xs), args);
    REQUIRE(gy.shape() == cy.shape());
    const std::string at =
        "window " + std::to_string(args.kernel) + ", stride " + std::to_string(args.stride);
    check_bits(host(gy), host(cy), at + " forward");
    const auto dy = ints(cy.numel(), 9);
    check_bits(host(gpu().maxpool_backward(gpu_t(x, xs), gy, gpu_t(dy, cy.shape()), args)),
               host(cpu().maxpool_backward(cpu_t(x, xs), cy, cpu_t(dy, cy.shape()), args)),
               at + " backward");
  }
}

CUDA_CASE("max-pool ties give the gradient to exactly one input (CASE 11)") {
  const Tensor x = gpu_t({1, 2, 2, 2}, {1, 1, 2, 2});
  const Tensor y = gpu().maxpool_forward(x, {2, 2});
  CHECK(scalar(y) == 2.0f);
  const auto dx = host(gpu().maxpool_backward(x, y, gpu_t({1}, {1, 1, 1, 1}), {2, 2}));
  int ones = 0;
  for (float v : dx) ones += v == 1.0f;
  CHECK(ones == 1);
  CHECK(dx[0] + dx[1] + dx[2] + dx[3] == 1.0f);
  CHECK(dx[0] == 0.0f);  // never the smaller value
  MESSAGE("cuDNN gives the tied gradient to position "
          << (std::find(dx.begin(), dx.end(), 1.0f) - dx.begin())
          << " (the CPU's convention, first maximum, is position 1)");
}

// ---- linear ----------------------------------------------------------------------------------

CUDA_CASE("linear layers match the CPU exactly on integer inputs (GEMM layout)") {
  // N=5, in=7, out=3: every transposition mistake changes a shape or a value.
  const auto x = ints(35, 11), w = ints(21, 12), b = ints(3, 13), dy = ints(15, 14);
  for (bool bias : {true, false}) {
    const Tensor cb = bias ? cpu_t(b, {3}) : Tensor(), gb = bias ? gpu_t(b, {3}) : Tensor();
    const Tensor cy = cpu().linear_forward(cpu_t(x, {5, 7}), cpu_t(w, {3, 7}), cb);
    const Tensor gy = gpu().linear_forward(gpu_t(x, {5, 7}), gpu_t(w, {3, 7}), gb);
    REQUIRE(gy.shape() == Shape{5, 3});
    check_bits(host(gy), host(cy), bias ? "forward with bias" : "forward without bias");
  }
  const ConvGrads cg = cpu().linear_backward(cpu_t(x, {5, 7}), cpu_t(w, {3, 7}),
                                             cpu_t(dy, {5, 3}), true, true, true);
  const ConvGrads gg = gpu().linear_backward(gpu_t(x, {5, 7}), gpu_t(w, {3, 7}),
                                             gpu_t(dy, {5, 3}), true, true, true);
  check_bits(host(gg.dx), host(cg.dx), "dx");
  check_bits(host(gg.dw), host(cg.dw), "dw");
  check_bits(host(gg.db), host(cg.db), "db");
  DeterministicScope det(true);  // pedantic cuBLAS math: the same exact answers
  check_bits(host(gpu().linear_forward(gpu_t(x, {5, 7}), gpu_t(w, {3, 7}), gpu_t(b, {3}))),
             host(cpu().linear_forward(cpu_t(x, {5, 7}), cpu_t(w, {3, 7}), cpu_t(b, {3}))),
             "forward, deterministic mode");
}

CUDA_CASE("a shared weight and a reused input accumulate their gradients (CASE 12)") {
  // y = W·x1 + W·x2 with L = sum(y): dW = [[1,1],[1,1]].
  Tensor W = gpu_t({1, 2, 3, 4}, {2, 2});
  W.set_requires_grad(true);
  const Tensor x1 = gpu_t({1, 0}, {1, 2}), x2 = gpu_t({0, 1}, {1, 2});
  const Tensor y = ops::add(ops::linear(x1, W, Tensor()), ops::linear(x2, W, Tensor()));
  y.backward(gpu_t({1, 1}, {1, 2}));
  REQUIRE(W.grad().defined());
  check_bits(host(W.grad()), {1, 1, 1, 1}, "dW");

  // z = x + x: dx = 2.
  Tensor x = gpu_t({3, -1}, {2});
  x.set_requires_grad(true);
  ops::add(x, x).backward(gpu_t({1, 1}, {2}));
  check_bits(host(x.grad()), {2, 2}, "dx of x + x");
}

// ---- PReLU -----------------------------------------------------------------------------------

CUDA_CASE("PReLU matches its CPU twin with per-channel and shared slopes") {
  struct Case {
    Shape x;
    int64_t slopes;
  };
  for (const Case& c : {Case{{3, 5, 4, 3}, 5}, Case{{3, 5, 4, 3}, 1}, Case{{7, 6}, 6},
                        Case{{7, 6}, 1}}) {
    const int64_t N = c.x[0], Ch = c.x[1], S = shape_numel(c.x) / (N * Ch);
    const auto x = ints(shape_numel(c.x), 21), dy = ints(shape_numel(c.x), 22);  // has zeros
    const auto a = reals(c.slopes, 23, 0.1f, 0.4f);
    std::vector<float> y(x.size()), dx(x.size()), da(a.size());
    kernels::prelu_forward(x.data(), a.data(), N, Ch, S, c.slopes, y.data());
    kernels::prelu_backward(x.data(), a.data(), dy.data(), N, Ch, S, c.slopes, dx.data(),
                            da.data());
    const std::string at = shape_str(c.x) + " with " + std::to_string(c.slopes) + " slopes";
    const Tensor gx = gpu_t(x, c.x), ga = gpu_t(a, {c.slopes});
    check_bits(host(gpu().prelu_forward(gx, ga)), y, at + " forward");
    const ConvGrads g = gpu().prelu_backward(gx, ga, gpu_t(dy, c.x));
    check_bits(host(g.dx), dx, at + " dx");
    // da sums integer·slope products in double on both sides, in different orders.
    check_close(host(g.dw), da, 1e-6, 1e-6, at + " da");
  }
}

// ---- batch norm ------------------------------------------------------------------------------

CUDA_CASE("batch norm matches the CPU: output, statistics, running stats, backward") {
  for (const Shape& xs : {Shape{4, 3, 5, 3}, Shape{6, 5}}) {
    const int64_t C = xs[1];
    const auto x = reals(shape_numel(xs), 31, -2.0f, 3.0f);
    const auto gamma = reals(C, 32, 0.5f, 1.5f), beta = reals(C, 33), dy = reals(x.size(), 34);
    const auto rm0 = reals(C, 35), rv0 = reals(C, 36, 0.5f, 2.0f);
    Tensor crm = cpu_t(rm0, {C}), crv = cpu_t(rv0, {C});
    Tensor grm = gpu_t(rm0, {C}), grv = gpu_t(rv0, {C});
    const BatchNormOut co = cpu().batchnorm_train(cpu_t(x, xs), cpu_t(gamma, {C}),
                                                  cpu_t(beta, {C}), crm, crv, 0.1f, 1e-5f);
    const BatchNormOut go = gpu().batchnorm_train(gpu_t(x, xs), gpu_t(gamma, {C}),
                                                  gpu_t(beta, {C}), grm, grv, 0.1f, 1e-5f);
    const std::string at = shape_str(xs);
    // cuDNN and the CPU sum the statistics in different orders: a few float ulps of values
    // of order 1 (x in [-2, 3], gamma near 1), so 1e-5 both ways.
    check_close(host(go.y), host(co.y), 1e-5, 1e-5, at + " y");
    check_close(host(go.mean), host(co.mean), 1e-5, 1e-6, at + " saved mean");
    check_close(host(go.invstd), host(co.invstd), 1e-5, 1e-6, at + " saved invstd");
    // SPEC 1: the running variance uses the unbiased batch variance, m = 0.1.
    check_close(host(grm), host(crm), 1e-5, 1e-6, at + " running mean");
    check_close(host(grv), host(crv), 1e-5, 1e-6, at + " running var (unbiased)");

    const BatchNormGrads cg = cpu().batchnorm_backward(cpu_t(x, xs), cpu_t(gamma, {C}), co,
                                                       cpu_t(dy, xs));
    const BatchNormGrads gg = gpu().batchnorm_backward(gpu_t(x, xs), gpu_t(gamma, {C}), go,
                                                       gpu_t(dy, xs));
    // dx = γ·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)) cancels, and dγ, dβ are sums over
    // N·H·W terms of both signs: their rounding follows the tensor's largest value.
    check_close_to_max(host(gg.dx), host(cg.dx), 1e-5, at + " dx");
    check_close_to_max(host(gg.dgamma), host(cg.dgamma), 1e-5, at + " dgamma");
    check_close_to_max(host(gg.dbeta), host(cg.dbeta), 1e-5, at + " dbeta");

    check_close(host(gpu().batchnorm_eval(gpu_t(x, xs), gpu_t(gamma, {C}), gpu_t(beta, {C}),
                                          grm, grv, 1e-5f)),
                host(cpu().batchnorm_eval(cpu_t(x, xs), cpu_t(gamma, {C}), cpu_t(beta, {C}),
                                          crm, crv, 1e-5f)),
                1e-5, 1e-5, at + " eval");
  }
}

// ---- softmax cross-entropy -------------------------------------------------------------------

namespace {

// The GPU loss and gradient next to the CPU twin's (1e-6: both accumulate in double and
// round once to float; the last bit may differ where the sums ran in different orders).
void compare_ce(const std::vector<float>& z, const std::vector<int32_t>& y, int64_t C,
                const std::string& what) {
  const int64_t B = int64_t(y.size());
  std::vector<float> grad(z.size());
  const float loss = kernels::softmax_ce(z.data(), y.data(), B, C, grad.data());
  const LossOut out = gpu().softmax_ce(gpu_t(z, {B, C}), gpu_i(y));
  check_close({scalar(out.loss)}, {loss}, 1e-6, 1e-7, what + " loss");
  check_close(host(out.grad), grad, 1e-6, 1e-9, what + " grad");
}

}  // namespace

CUDA_CASE("softmax cross-entropy matches its CPU twin") {
  compare_ce(reals(7 * 11, 41, -5.0f, 5.0f), classes(7, 42, 11), 11, "7x11");
  compare_ce(reals(45 * 3, 43, -30.0f, 30.0f), classes(45, 44, 3), 3, "45x3");
  compare_ce(reals(3 * 100, 45, -2.0f, 2.0f), classes(3, 46, 100), 100, "3x100");
}

CUDA_CASE("softmax cross-entropy on extreme logits (CASES 1-4)") {
  const float inf = INFINITY;
  struct Case {
    std::vector<float> z;
    int32_t y;
    float loss;
    std::vector<float> grad;  // empty: not pinned by the case
  };
  const Case cases[] = {
      {{1e8f, 1e8f}, 1, 0.6931472f, {0.5f, -0.5f}},
      {{-100, -300, -300, -300}, 1, 200.0f, {}},
      {{-300, -300, -300, -300}, 2, 1.3862944f, {0.25f, 0.25f, -0.75f, 0.25f}},
      {{0, -inf}, 0, 0.0f, {0.0f, 0.0f}},
  };
  int number = 1;
  for (const Case& c : cases) {
    const int64_t C = int64_t(c.z.size());
    const LossOut out = gpu().softmax_ce(gpu_t(c.z, {1, C}), gpu_i({c.y}));
    const std::string at = "CASE " + std::to_string(number++);
    check_close({scalar(out.loss)}, {c.loss}, 1e-5, 1e-7, at + " loss");
    const auto g = host(out.grad);
    CHECK_MESSAGE(all_finite(g), at << ": gradient not finite");
    if (!c.grad.empty()) check_close(g, c.grad, 1e-5, 1e-7, at + " grad");
  }
}

CUDA_CASE("bad labels are refused before any kernel, as on the CPU (CASE 5)") {
  // Same call on both backends: the same exception type and the same message.
  auto same_error = [](const std::function<void(Backend&, Device)>& call, const char* what) {
    std::string cpu_msg, gpu_msg;
    try {
      call(cpu(), Device::cpu);
    } catch (const std::invalid_argument& e) {
      cpu_msg = e.what();
    }
    try {
      call(gpu(), Device::cuda);
    } catch (const std::invalid_argument& e) {
      gpu_msg = e.what();
    }
    INFO(what << ": CPU says \"" << cpu_msg << "\", GPU says \"" << gpu_msg << "\"");
    CHECK(gpu_msg.find("label 5") != std::string::npos);
    CHECK(gpu_msg == cpu_msg);
  };
  const auto z = reals(15, 51);
  const std::vector<int32_t> bad{1, 0, 5};
  same_error(
      [&](Backend& be, Device d) {
        be.softmax_ce(Tensor::from(z, {3, 5}, d), Tensor::from_i32(bad, {3}, d));
      },
      "softmax_ce");
  same_error(
      [&](Backend& be, Device d) {
        be.center_loss(Tensor::from(z, {3, 5}, d), Tensor::from_i32(bad, {3}, d),
                       Tensor::zeros({3, 5}, d));
      },
      "center_loss");
  same_error(
      [&](Backend& be, Device d) {
        Tensor centers = Tensor::zeros({3, 5}, d);
        be.center_update(Tensor::from(z, {3, 5}, d), Tensor::from_i32(bad, {3}, d), centers,
                         0.5f);
      },
      "center_update");
  same_error(
      [&](Backend& be, Device d) {
        be.s2r_loss(Tensor::from(z, {3, 5}, d), Tensor::from_i32(bad, {3}, d),
                    Tensor::zeros({3, 5}, d), Tensor::zeros({3}, d), S2RSettings{});
      },
      "s2r_loss");
  // SNNL has no class count, so only a negative label is out of range; it is refused too.
  CHECK_THROWS_WITH_AS(gpu().snnl(gpu_t(z, {3, 5}), gpu_i({1, -1, 0}), 1.0f),
                       doctest::Contains("label -1"), std::invalid_argument);
}

// ---- center loss -----------------------------------------------------------------------------

CUDA_CASE("center loss: SPEC 2.2 worked example, and an absent class keeps its center") {
  const Tensor x = gpu_t({1, 0, 3, 0, 5, 5}, {3, 2});
  const Tensor y = gpu_i({0, 0, 1});
  Tensor centers = gpu_t({0, 0, 1, 1, 5, -5}, {3, 2});
  const LossOut out = gpu().center_loss(x, y, centers);
  check_close({scalar(out.loss)}, {7.0f}, 1e-6, 0.0, "loss");
  check_close(host(out.grad), {1.0f / 3, 0, 1, 0, 4.0f / 3, 4.0f / 3}, 1e-6, 1e-7, "grad");
  gpu().center_update(x, y, centers, 0.5f);
  const auto c = host(centers);
  check_close(c, {2.0f / 3, 0, 2, 2, 5, -5}, 1e-6, 1e-7, "new centers");
  check_bits({c[4], c[5]}, {5.0f, -5.0f}, "absent class 2");
}

CUDA_CASE("center loss and update match the CPU twin on odd shapes") {
  const int64_t B = 37, D = 19, C = 7;  // class 6 never drawn below: stays absent
  const auto x = reals(B * D, 61, -3.0f, 3.0f), c0 = reals(C * D, 62);
  const auto y = classes(B, 63, C - 1);
  std::vector<float> grad(x.size()), c_cpu = c0;
  const float loss = kernels::center_loss(x.data(), y.data(), c0.data(), B, D, grad.data());
  kernels::center_update(x.data(), y.data(), c_cpu.data(), B, D, C, 0.3f);

  Tensor c_gpu = gpu_t(c0, {C, D});
  const LossOut out = gpu().center_loss(gpu_t(x, {B, D}), gpu_i(y), c_gpu);
  check_close({scalar(out.loss)}, {loss}, 1e-6, 0.0, "loss");
  check_close(host(out.grad), grad, 1e-6, 1e-9, "grad");
  gpu().center_update(gpu_t(x, {B, D}), gpu_i(y), c_gpu, 0.3f);
  // Both sum each class in batch order in double: at most the last bit differs.
  check_close(host(c_gpu), c_cpu, 1e-6, 1e-7, "updated centers");
  const auto c = host(c_gpu);
  check_bits(std::vector<float>(c.end() - D, c.end()), std::vector<float>(c0.end() - D, c0.end()),
             "absent class");
}

// ---- soft nearest neighbour loss ---------------------------------------------------------------

namespace {

float gpu_snnl(const std::vector<float>& x, const std::vector<int32_t>& y, int64_t D, float T,
               std::vector<float>* grad = nullptr) {
  const LossOut out = gpu().snnl(gpu_t(x, {int64_t(y.size()), D}), gpu_i(y), T);
  if (grad) *grad = host(out.grad);
  return scalar(out.loss);
}

}  // namespace

CUDA_CASE("SNNL values (CASES 8-10) and its gradient by central differences") {
  std::vector<float> g;
  // CASE 8: two anchors count; with all classes distinct none does: 0 and a zero gradient.
  const std::vector<float> square{0, 0, 1, 0, 0, 1, 1, 1};
  check_close({gpu_snnl(square, {0, 1, 1, 3}, 2, 1.0f)}, {1.861995f}, 1e-5, 0.0, "CASE 8");
  check_close({gpu_snnl(square, {0, 1, 2, 3}, 2, 1.0f, &g)}, {0.0f}, 0.0, 0.0, "CASE 8 none");
  check_bits(g, std::vector<float>(8, 0.0f), "CASE 8 zero gradient");

  // CASE 9: T = 0.01, anchors 800 and 500: 650 exactly (to float), gradient finite.
  check_close({gpu_snnl({0, 3, 1}, {0, 0, 1}, 1, 0.01f, &g)}, {650.0f}, 1e-5, 0.0, "CASE 9");
  CHECK(all_finite(g));

  // CASE 10: the worked example, then central differences (h = 1e-2: the loss is smooth
  // and of order 1, so truncation and float rounding of the loss stay below ~2e-5).
  std::vector<float> x{0, 1, 2, 4};
  const std::vector<int32_t> y{0, 0, 1, 1};
  check_close({gpu_snnl(x, y, 1, 1.0f, &g)}, {0.960887f}, 1e-5, 0.0, "CASE 10");
  const auto numeric = central_diff(x, [&] { return double(gpu_snnl(x, y, 1, 1.0f)); }, 1e-2f);
  check_gradient(g, numeric, 2e-4, "CASE 10 gradient");
}

CUDA_CASE("SNNL matches its CPU twin on shapes that are not multiples of the tile") {
  struct Case {
    int64_t B, D, C;
    float T;
  };
  for (const Case& c : {Case{37, 19, 5, 1.0f}, Case{16, 16, 3, 0.5f}, Case{50, 2, 10, 0.1f},
                        Case{5, 33, 4, 2.0f}}) {
    const auto x = reals(c.B * c.D, uint32_t(70 + c.B), -1.0f, 1.0f);
    const auto y = classes(c.B, uint32_t(80 + c.B), int(c.C));
    std::vector<float> grad(x.size()), g;
    const float loss = kernels::snnl(x.data(), y.data(), c.B, c.D, c.T, grad.data());
    const std::string at = "B=" + std::to_string(c.B) + " D=" + std::to_string(c.D);
    // Both work in double; the GPU's online log-sum-exp rescales where the CPU shifts once.
    check_close({gpu_snnl(x, y, c.D, c.T, &g)}, {loss}, 1e-5, 1e-7, at + " loss");
    check_close(g, grad, 1e-4, 1e-6, at + " grad");
  }
}

// ---- σ²R --------------------------------------------------------------------------------------

#if defined(SIGMAR_CUDA)
CUDA_CASE("the GPU's stable sigmoid at the extremes (CASE 18)") {
  const std::vector<float> t{-1000, -89, 0, 89, 1000};
  const Tensor gt = gpu_t(t, {5});
  Tensor s = Tensor::empty({5}, Device::cuda), s1ms = Tensor::empty({5}, Device::cuda);
  kernels::gpu::sigmoid_pair(gt.data(), 5, s.data(), s1ms.data(), cuda::stream());
  const auto sv = host(s), dv = host(s1ms);
  CHECK(all_finite(sv));
  CHECK(all_finite(dv));
  // σ(−89) ≈ 2.2e−39 is subnormal: 0 is also right (absolute 1e−30).
  check_close(sv, {0, 0, 0.5f, 1, 1}, 0.0, 1e-30, "sigmoid");
  check_close(dv, {0, 0, 0.25f, 0, 0}, 0.0, 1e-30, "sigmoid slope");
}
#endif

CUDA_CASE("s2r loss matches its CPU twin (full and detached) and so does its update") {
  const int64_t B = 29, D = 5, C = 4;
  const auto x = reals(B * D, 91, -2.0f, 2.0f), c0 = reals(C * D, 92, -0.5f, 0.5f);
  const auto v0 = reals(C, 93, 0.2f, 3.0f);
  const auto y = classes(B, 94, int(C));
  for (bool detached : {false, true}) {
    const kernels::S2RParams p{1.5f, detached, 1e-6f};
    std::vector<float> grad(x.size());
    const float loss =
        kernels::s2r_loss(x.data(), y.data(), c0.data(), v0.data(), B, D, p, grad.data());
    const LossOut out = gpu().s2r_loss(gpu_t(x, {B, D}), gpu_i(y), gpu_t(c0, {C, D}),
                                       gpu_t(v0, {C}), S2RSettings{1.5f, detached, 1e-6f});
    const std::string at = detached ? "detached" : "full";
    check_close({scalar(out.loss)}, {loss}, 1e-6, 0.0, at + " loss");
    check_close(host(out.grad), grad, 1e-6, 1e-9, at + " grad");
  }
  std::vector<float> c_cpu = c0, v_cpu = v0;
  kernels::s2r_update(x.data(), y.data(), c_cpu.data(), v_cpu.data(), B, D, C, 0.4f);
  Tensor c_gpu = gpu_t(c0, {C, D}), v_gpu = gpu_t(v0, {C});
  gpu().s2r_update(gpu_t(x, {B, D}), gpu_i(y), c_gpu, v_gpu, 0.4f);
  check_close(host(c_gpu), c_cpu, 1e-6, 1e-7, "updated centers");
  check_close(host(v_gpu), v_cpu, 1e-6, 1e-7, "updated variances");
}

CUDA_CASE("s2r: a far outlier stays finite (CASE 19); k -> 0 gives center loss (CASE 20)") {
  // One feature 1e4 from its center (class variance 1): w saturates at 2, s(1 − s) = 0.
  std::vector<float> x{1e4f, 0, 0.5f, 0.5f, 1, -1};
  const std::vector<int32_t> y{0, 0, 1};
  const Tensor centers = gpu_t({0, 0, 0, 0}, {2, 2}), vars = gpu_t({1.0f, 0.5f}, {2});
  auto loss = [&](std::vector<float>* grad) {
    const LossOut out = gpu().s2r_loss(gpu_t(x, {3, 2}), gpu_i(y), centers, vars, {});
    if (grad) *grad = host(out.grad);
    return double(scalar(out.loss));
  };
  std::vector<float> g;
  const double l = loss(&g);
  CHECK(std::isfinite(l));
  CHECK(all_finite(g));
  // Central difference along the outlier's own coordinate with h = 1 (exact for its
  // quadratic term): the loss is ~3e7, its float rounding ~2, so the quotient is off by ~2
  // against a derivative of ~7e3. The other coordinates' derivatives (~1) sit below that
  // rounding, so all of them are checked against the CPU twin (double inside) instead.
  std::vector<float> probe{x[0]};
  const auto numeric = central_diff(
      probe,
      [&] {
        x[0] = probe[0];
        return loss(nullptr);
      },
      1.0f);
  x[0] = probe[0];
  check_gradient({g[0]}, numeric, 1e-3, "CASE 19 gradient along the outlier");
  std::vector<float> want(x.size());
  kernels::s2r_loss(x.data(), y.data(), std::vector<float>(4, 0.0f).data(),
                    std::vector<float>{1.0f, 0.5f}.data(), 3, 2, kernels::S2RParams{}, want.data());
  check_close(g, want, 1e-6, 1e-9, "CASE 19 gradient against the CPU twin");

  // CASE 20: SPEC 2.2's example with a fresh state (v = 0) is center loss as k -> 0. The
  // factor is w = 2σ(k·z) ≈ 1 + k·z/2 with z = d/ε up to 3.2e7, so at k = 1e-12 the loss
  // exceeds 7 by k·Σd²/(4Bε) ≈ 9.2e-5 (1.3e-5 relative): that bound is the limit there; at
  // k = 1e-15 the loss and its gradient are center loss's to float precision.
  auto case20 = [&](float k) {
    return gpu().s2r_loss(gpu_t({1, 0, 3, 0, 5, 5}, {3, 2}), gpu_i({0, 0, 1}),
                          gpu_t({0, 0, 1, 1, 5, -5}, {3, 2}), gpu_t({0, 0, 0}, {3}),
                          S2RSettings{k, false, 1e-6f});
  };
  check_close({scalar(case20(1e-12f).loss)}, {7.0f}, 2e-5, 0.0, "CASE 20, k = 1e-12");
  const LossOut tiny = case20(1e-15f);
  check_close({scalar(tiny.loss)}, {7.0f}, 1e-6, 0.0, "CASE 20, k = 1e-15");
  check_close(host(tiny.grad), {1.0f / 3, 0, 1, 0, 4.0f / 3, 4.0f / 3}, 1e-6, 1e-7,
              "CASE 20 gradient, k = 1e-15");
}

// ---- optimizers ------------------------------------------------------------------------------

CUDA_CASE("SGD, Adam and AdamW match their CPU twins over several steps") {
  const int64_t n = 1037;
  const auto w0 = reals(n, 101), g = reals(n, 102);
  // Element formulas are the same; the compilers may fuse a multiply-add differently, which
  // moves a result by an ulp: 1e-6 relative over three steps.
  for (SgdSettings s : {SgdSettings{0.1f, 0.0f, 0.0f, false},
                        SgdSettings{0.05f, 0.9f, 1e-2f, false},
                        SgdSettings{0.05f, 0.9f, 0.0f, true}}) {
    std::vector<float> w = w0, buf(n, 0.0f);
    Tensor gw = gpu_t(w0, {n}), gbuf = Tensor::zeros({n}, Device::cuda), gg = gpu_t(g, {n});
    for (int step = 0; step < 3; ++step) {
      kernels::sgd_step(w.data(), g.data(), buf.data(), n, s.lr, s.momentum, s.weight_decay,
                        s.nesterov);
      gpu().sgd_step(gw, gg, gbuf, s);
    }
    const std::string at = "sgd momentum " + std::to_string(s.momentum) +
                           (s.nesterov ? " nesterov" : "");
    check_close(host(gw), w, 1e-6, 1e-7, at + " w");
    if (s.momentum != 0.0f) check_close(host(gbuf), buf, 1e-6, 1e-7, at + " buffer");
  }
  for (bool decoupled : {false, true}) {
    const AdamSettings s{1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f, decoupled};
    std::vector<float> w = w0, m(n, 0.0f), v(n, 0.0f);
    Tensor gw = gpu_t(w0, {n}), gm = Tensor::zeros({n}, Device::cuda);
    Tensor gv = Tensor::zeros({n}, Device::cuda);
    const Tensor gg = gpu_t(g, {n});
    for (int64_t t = 1; t <= 3; ++t) {
      kernels::adam_step(w.data(), g.data(), m.data(), v.data(), n, t, s.lr, s.beta1, s.beta2,
                         s.eps, s.weight_decay, s.decoupled);
      gpu().adam_step(gw, gg, gm, gv, t, s);
    }
    const std::string at = decoupled ? "adamw" : "adam";
    check_close(host(gw), w, 1e-6, 1e-7, at + " w");
    check_close(host(gm), m, 1e-6, 1e-9, at + " m");
    check_close(host(gv), v, 1e-6, 1e-12, at + " v");
  }
}

#if defined(SIGMAR_CUDA)
CUDA_CASE("multi-tensor optimizer launches equal the single-tensor ones bit for bit") {
  namespace kg = kernels::gpu;
  // 30 tensors (more than one launch's table) of assorted sizes, one of them empty.
  std::vector<Tensor> w1, w2, m1, m2, v1, v2, g;
  std::vector<kg::ParamSlot> slots;
  for (int k = 0; k < 30; ++k) {
    const int64_t size = k == 7 ? 0 : (k * 977) % 5000 + 1;
    const auto w0 = reals(size, uint32_t(300 + k));
    w1.push_back(gpu_t(w0, {size}));
    w2.push_back(gpu_t(w0, {size}));
    g.push_back(gpu_t(reals(size, uint32_t(400 + k)), {size}));
    m1.push_back(Tensor::zeros({size}, Device::cuda));
    m2.push_back(Tensor::zeros({size}, Device::cuda));
    v1.push_back(Tensor::zeros({size}, Device::cuda));
    v2.push_back(Tensor::zeros({size}, Device::cuda));
    slots.push_back({w2.back().data(), g.back().data(), m2.back().data(), v2.back().data(),
                     size});
  }
  for (int64_t t = 1; t <= 2; ++t) {
    for (size_t k = 0; k < w1.size(); ++k)
      kg::adam_step(w1[k].data(), g[k].data(), m1[k].data(), v1[k].data(), w1[k].numel(), t,
                    1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, true, cuda::stream());
    kg::adam_step_multi(slots.data(), int(slots.size()), t, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f,
                        true, cuda::stream());
  }
  for (size_t k = 0; k < w1.size(); ++k) {
    check_bits(host(w2[k]), host(w1[k]), "adam w of tensor " + std::to_string(k));
    check_bits(host(v2[k]), host(v1[k]), "adam v of tensor " + std::to_string(k));
  }
  // SGD with momentum through the same table (s1 = the momentum buffer).
  for (size_t k = 0; k < w1.size(); ++k) {
    kg::sgd_step(w1[k].data(), g[k].data(), m1[k].data(), w1[k].numel(), 0.1f, 0.9f, 0.0f,
                 true, cuda::stream());
  }
  kg::sgd_step_multi(slots.data(), int(slots.size()), 0.1f, 0.9f, 0.0f, true, cuda::stream());
  for (size_t k = 0; k < w1.size(); ++k)
    check_bits(host(w2[k]), host(w1[k]), "sgd w of tensor " + std::to_string(k));
}
#endif

// ---- data ------------------------------------------------------------------------------------

CUDA_CASE("gather_normalize matches the CPU backend and checks every index") {
  const Shape is{5, 3, 4, 6};
  std::vector<uint8_t> px(static_cast<size_t>(shape_numel(is)));
  Lcg r{111};
  for (auto& p : px) p = uint8_t(r.next() >> 24);
  const std::vector<float> mean{0.5f, 0.25f, 0.75f}, sd{0.2f, 0.3f, 0.25f};
  const std::vector<int32_t> idx{3, 0, 4, 3};
  const Tensor out = gpu().gather_normalize(Tensor::from_u8(px, is, Device::cuda), gpu_i(idx),
                                            mean, sd);
  const Tensor want = cpu().gather_normalize(Tensor::from_u8(px, is), cpu_i(idx), mean, sd);
  REQUIRE(out.shape() == Shape{4, 3, 4, 6});
  // Both compute p·scale + shift with the same float constants; a fused multiply-add on
  // one side only moves the last bit.
  check_close(host(out), host(want), 1e-6, 1e-6, "gathered batch");
  CHECK_THROWS_WITH_AS(gpu().gather_normalize(Tensor::from_u8(px, is, Device::cuda),
                                              gpu_i({0, 5}), mean, sd),
                       doctest::Contains("index 5"), std::invalid_argument);
}

// ---- determinism -----------------------------------------------------------------------------

CUDA_CASE("deterministic mode: conv and overlapping max-pool gradients repeat bitwise (CASE 14)") {
  DeterministicScope det(true);
  const Shape xs{8, 3, 17, 15}, ws{6, 3, 3, 3};
  const auto x = reals(shape_numel(xs), 121), w = reals(shape_numel(ws), 122);
  auto run = [&] {
    const Tensor gx = gpu_t(x, xs), gw = gpu_t(w, ws);
    const Tensor y = gpu().conv2d_forward(gx, gw, Tensor(), {1, 1});
    const Tensor p = gpu().maxpool_forward(y, {3, 2});  // overlapping windows
    const Tensor dp = gpu_t(reals(p.numel(), 123), p.shape());
    const Tensor dy = gpu().maxpool_backward(y, p, dp, {3, 2});
    const ConvGrads g = gpu().conv2d_backward(gx, gw, dy, {1, 1}, true, true, true);
    return std::vector<std::vector<float>>{host(p), host(dy), host(g.dx), host(g.dw),
                                           host(g.db)};
  };
  const auto first = run(), second = run();
  const char* names[] = {"pool forward", "pool backward", "conv dx", "conv dw", "conv db"};
  for (size_t i = 0; i < first.size(); ++i) check_bits(second[i], first[i], names[i]);

  // Our loss kernels are deterministic in every mode: SNNL and the center update too.
  const auto fx = reals(61 * 7, 124);
  const auto fy = classes(61, 125, 4);
  std::vector<float> g1, g2;
  const float l1 = gpu_snnl(fx, fy, 7, 0.7f, &g1), l2 = gpu_snnl(fx, fy, 7, 0.7f, &g2);
  check_bits({l2}, {l1}, "snnl loss");
  check_bits(g2, g1, "snnl grad");
}

// ---- preconditions -----------------------------------------------------------------------------

CUDA_CASE("ops and launchers check their arguments before running") {
  // A CPU tensor handed to the GPU backend, mismatched channels, a window that does not fit.
  CHECK_THROWS_WITH_AS(gpu().relu_forward(cpu_t({1, 2}, {2})), doctest::Contains("not the GPU"),
                       std::invalid_argument);
  CHECK_THROWS_AS(gpu().conv2d_forward(gpu_t(ints(2 * 3 * 5 * 5, 1), {2, 3, 5, 5}),
                                       gpu_t(ints(4 * 2 * 3 * 3, 2), {4, 2, 3, 3}), Tensor(),
                                       {1, 0}),
                  std::invalid_argument);
  CHECK_THROWS_AS(gpu().maxpool_forward(gpu_t(ints(4, 3), {1, 1, 2, 2}), {3, 1}),
                  std::invalid_argument);
  CHECK_THROWS_AS(gpu().linear_forward(gpu_t(ints(6, 4), {2, 3}), gpu_t(ints(8, 5), {2, 4}),
                                       Tensor()),
                  std::invalid_argument);
  CHECK_THROWS_AS(gpu().snnl(gpu_t({0, 1}, {2, 1}), gpu_i({0, 0}), 0.0f), std::invalid_argument);
#if defined(SIGMAR_CUDA)
  // A launcher without its workspace, and a bad optimizer setting.
  Tensor z = gpu_t({0, 1}, {1, 2}), loss = Tensor::empty({1}, Device::cuda);
  const Tensor y = gpu_i({1});
  CHECK_THROWS_AS(kernels::gpu::softmax_ce(z.data(), y.data_i32(), 1, 2, nullptr, loss.data(),
                                           nullptr, cuda::stream()),
                  std::invalid_argument);
  CHECK_THROWS_AS(kernels::gpu::sgd_step(z.data(), z.data(), nullptr, 2, 0.1f, 0.0f, 0.0f, true,
                                         cuda::stream()),
                  std::invalid_argument);
#endif
}
