// sigmar-bench-step: times one LeNet++ training step (forward, cross-entropy, backward, Adam)
// on the CPU, the unit of work of sigmar-train. tools/bench_step.sh runs it beside the same
// step in PyTorch and prints the ratio. Prints one JSON line:
//   {"engine":"sigmar","batch":128,"threads":2,"ms_per_step":..., "img_per_s":..., ...}
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>

#include "engine/backend.hpp"
#include "engine/ops.hpp"
#include "engine/optim.hpp"
#include "engine/profile.hpp"
#include "models/models.hpp"

using namespace sigmar;

int main(int argc, char** argv) {
  CLI::App app{"time a LeNet++ training step on the CPU"};
  int64_t batch = 128, feature_dim = 2;
  int threads = 2;
  double budget = 10.0;
  int warmup = 3;
  app.add_option("--batch-size", batch)->capture_default_str();
  app.add_option("--feature-dim", feature_dim)->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--seconds", budget, "time budget for the timed steps")->capture_default_str();
  app.add_option("--warmup", warmup)->capture_default_str();
  bool show_profile = false;
  app.add_flag("--profile", show_profile, "print the time per op (on stderr)");
  CLI11_PARSE(app, argc, argv);

  set_cpu_threads(threads);
  Rng rng(1);
  ModelConfig mc;
  mc.feature_dim = feature_dim;
  auto model = make_model(mc, rng, Device::cpu);
  auto opt = make_optimizer(OptimizerConfig{}, model->parameters());
  std::vector<float> pixels(batch * 28 * 28);
  for (float& p : pixels) p = rng.uniform(-1.0f, 2.0f);
  std::vector<int32_t> labels(batch);
  for (auto& y : labels) y = static_cast<int32_t>(rng.below(10));
  Tensor x = Tensor::from(pixels, {batch, 1, 28, 28});
  Tensor y = Tensor::from_i32(labels, {batch});

  using clock = std::chrono::steady_clock;
  auto step = [&](double* fwd_ms, double* bwd_ms, double* opt_ms) {
    auto t0 = clock::now();
    ModelOutput out = model->forward(x, true);
    Tensor loss = ops::softmax_cross_entropy(out.logits, y);
    auto t1 = clock::now();
    model->zero_grad();
    loss.backward();
    auto t2 = clock::now();
    opt->step(1e-3f);
    auto t3 = clock::now();
    auto ms = [](auto a, auto b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    *fwd_ms = ms(t0, t1);
    *bwd_ms = ms(t1, t2);
    *opt_ms = ms(t2, t3);
  };
  double f, b, o;
  for (int i = 0; i < warmup; ++i) step(&f, &b, &o);
  std::vector<double> total, fwd, bwd, upd;
  profile::enable(show_profile);
  auto start = clock::now();
  while (total.size() < 3 || std::chrono::duration<double>(clock::now() - start).count() < budget) {
    step(&f, &b, &o);
    fwd.push_back(f);
    bwd.push_back(b);
    upd.push_back(o);
    total.push_back(f + b + o);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double ms = median(total);
  if (show_profile) {
    for (auto& [name, e] : profile::table()) {
      std::cerr << fmt::format("{:<24}{:>9.2f} ms/step {:>6} calls/step\n", name,
                               e.ms / total.size(), e.calls / static_cast<long>(total.size()));
    }
  }
  std::cout << fmt::format(
      "{{\"engine\":\"sigmar\",\"batch\":{},\"threads\":{},\"steps\":{},\"ms_per_step\":{:.2f},"
      "\"forward_ms\":{:.2f},\"backward_ms\":{:.2f},\"optimizer_ms\":{:.2f},"
      "\"img_per_s\":{:.1f}}}\n",
      batch, threads, total.size(), ms, median(fwd), median(bwd), median(upd), batch * 1000.0 / ms);
  return 0;
}
