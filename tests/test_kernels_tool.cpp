// Tests of sigmar-kernels (tools/kernels_registry.hpp): the table lists every kernel; `run`
// reads .npy inputs in every accepted dtype, refuses the rest with clear messages, writes its
// outputs as .npy and reproduces the SPEC worked examples, CASES 1 and PyTorch's Adam; each
// kernel agrees with its reference chain on random shapes; `check` without a GPU says so;
// `bench` verifies, times and writes JSON. Fixtures: tests/fixtures/kernels, written by NumPy
// and PyTorch (tools/make_kernel_fixtures.py).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/npy.hpp"
#include "engine/rng.hpp"
#include "tests/test_util.hpp"
#include "tools/kernels_registry.hpp"

namespace fs = std::filesystem;
using namespace sigmar;
using namespace sigmar::lab;
using namespace test_util;

namespace {

std::string fixture(const std::string& name) {
  return std::string(SIGMAR_SOURCE_DIR) + "/tests/fixtures/kernels/" + name + ".npy";
}

// `run` options for a kernel on fixture files, writing its outputs to s.dir/out.
RunOptions fixture_run(const ScratchDir& s, const std::string& kernel,
                       const std::map<std::string, std::string>& fixtures,
                       std::vector<std::string> params) {
  RunOptions o;
  o.kernel = kernel;
  for (const auto& [name, file] : fixtures) o.inputs[name] = fixture(file);
  o.params = std::move(params);
  o.out_dir = s.path("out");
  return o;
}

// Runs a kernel from fixture files; returns what it printed. Outputs land in s.dir/out.
std::string run(const ScratchDir& s, const std::string& kernel,
                const std::map<std::string, std::string>& fixtures,
                std::vector<std::string> params = {}) {
  std::ostringstream out;
  REQUIRE(run_command(fixture_run(s, kernel, fixtures, std::move(params)), out) == 0);
  return out.str();
}

std::vector<float> output(const ScratchDir& s, const std::string& name, Shape* shape = nullptr) {
  const NpyArray a = read_npy(s.path("out/" + name + ".npy"));
  CHECK(a.dtype == "f32");
  if (shape) *shape = a.shape;
  return npy_as_f32(a);
}

void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(tol));
}

// The message a failing run gives.
std::string run_error(const std::string& kernel, const std::map<std::string, std::string>& in,
                      std::vector<std::string> params = {}) {
  ScratchDir s("kernels-error");
  const RunOptions o = fixture_run(s, kernel, in, std::move(params));
  std::ostringstream out;
  const std::string msg = error_of<std::exception>([&] { run_command(o, out); });
  if (msg == kNoError) FAIL("run " << kernel << " succeeded where it should have failed");
  return msg;
}

const std::map<std::string, std::string> kCenterInputs{{"features", "center_features"},
                                                       {"labels", "center_labels_i64"},
                                                       {"centers", "center_centers_f64"}};

}  // namespace

TEST_CASE("kernels tool: every kernel is listed with its inputs, parameters and outputs") {
  const std::vector<std::string> want{"softmax-ce", "center", "snnl",   "s2r",   "sgd",
                                      "adam",       "prelu",  "conv2d", "linear"};
  std::ostringstream out;
  CHECK(list_command("", out) == 0);
  for (const auto& name : want) {
    const KernelSpec& k = find_kernel(name);
    CHECK(contains(out.str(), name + ": "));
    CHECK_FALSE(k.outputs.empty());
    CHECK(static_cast<bool>(k.run));
    CHECK(static_cast<bool>(k.cost));
    CHECK_FALSE(k.references.empty());
    CHECK_FALSE(k.bench_sizes.empty());
    for (const auto& p : k.params) CHECK(contains(out.str(), p.name + "="));
  }
  CHECK(registry().size() == want.size());
  // The SPEC names of the issue.
  std::ostringstream s2r;
  list_command("s2r", s2r);
  for (const char* word : {"features", "labels", "centers", "variances", "alpha", "slope",
                           "weight_grad", "eps", "grad_features.npy", "variances.npy"})
    CHECK(contains(s2r.str(), word));
}

TEST_CASE("kernels tool: run center reproduces SPEC 2.2 from .npy inputs in every label dtype") {
  for (const char* labels : {"center_labels_i64", "center_labels_i32", "center_labels_u8"}) {
    CAPTURE(labels);
    ScratchDir s("kernels-center");
    auto in = kCenterInputs;
    in["labels"] = labels;
    const std::string printed = run(s, "center", in, {"alpha=0.5"});
    CHECK(contains(printed, "loss = 7"));
    check_close(output(s, "loss"), {7.0}, 1e-6);
    Shape shape;
    check_close(output(s, "grad_features", &shape), {1.0 / 3, 0, 1, 0, 4.0 / 3, 4.0 / 3}, 1e-6);
    CHECK(shape == Shape{3, 2});
    // Centers were float64 on the way in: converted, updated, written as float32.
    check_close(output(s, "centers"), {2.0 / 3, 0, 2, 2, 5, -5}, 1e-6);
  }
}

TEST_CASE("kernels tool: run snnl reproduces SPEC 2.3") {
  ScratchDir s("kernels-snnl");
  run(s, "snnl", {{"features", "snnl_features"}, {"labels", "snnl_labels"}}, {"temperature=1"});
  check_close(output(s, "loss"), {0.960887}, 2e-6);
  CHECK(output(s, "grad_features").size() == 4);
}

TEST_CASE("kernels tool: run s2r with k -> 0 is center loss (CASES 20)") {
  ScratchDir s("kernels-s2r");
  auto in = kCenterInputs;
  in["variances"] = "s2r_variances_ones";
  run(s, "s2r", in, {"slope=1e-12"});
  check_close(output(s, "loss"), {7.0}, 1e-6);
  check_close(output(s, "grad_features"), {1.0 / 3, 0, 1, 0, 4.0 / 3, 4.0 / 3}, 1e-6);
  check_close(output(s, "centers"), {2.0 / 3, 0, 2, 2, 5, -5}, 1e-6);
  // Variances move toward each class's d by the same rule: class 0 has d = 1, 9; class 1 d = 32.
  check_close(output(s, "variances"),
              {1 - 0.5 * ((1 - 1) + (1 - 9)) / 3, 1 - 0.5 * (1 - 32) / 2, 1}, 1e-6);

  // Fresh state (variances left out: zeros): w ≈ 1 + k·d/(2ε), so the loss is
  // 7 + Σd²·k/(ε·4B) with Σd² = 1 + 81 + 1024, which is 7.000092.
  ScratchDir z("kernels-s2r-zero");
  run(z, "s2r", kCenterInputs, {"slope=1e-12"});
  check_close(output(z, "loss"), {7.0 + 1106.0 * (1e-12 / 1e-6) / (4.0 * 3)}, 2e-6);
}

TEST_CASE("kernels tool: run softmax-ce on CASES 1 (huge equal logits)") {
  ScratchDir s("kernels-ce");
  run(s, "softmax-ce", {{"logits", "ce_logits"}, {"labels", "ce_labels"}});
  check_close(output(s, "loss"), {std::log(2.0)}, 1e-6);
  check_close(output(s, "grad_logits"), {0.5, -0.5}, 1e-6);
}

TEST_CASE("kernels tool: run adam and adamw for one step match PyTorch") {
  const std::map<std::string, std::string> in{
      {"params", "adam_params"}, {"grads", "adam_grads"}, {"m", "adam_m"}, {"v", "adam_v"}};
  for (const char* tag : {"adam", "adamw"}) {
    CAPTURE(tag);
    ScratchDir s(std::string("kernels-") + tag);
    const std::string decoupled = std::string(tag) == "adamw" ? "true" : "false";
    run(s, "adam", in,
        {"lr=0.01", "beta1=0.9", "beta2=0.999", "eps=1e-8", "weight_decay=0.1",
         "decoupled=" + decoupled, "step=3"});
    for (const char* name : {"params", "m", "v"}) {
      CAPTURE(name);
      const std::vector<float> want =
          npy_as_f32(read_npy(fixture(std::string(tag) + "_expected_" + name)));
      check_close(output(s, name), std::vector<double>(want.begin(), want.end()), 2e-6);
    }
  }
}

TEST_CASE("kernels tool: outputs round-trip through .npy bit for bit") {
  ScratchDir s("kernels-roundtrip");
  Rng rng(3);
  std::vector<float> v(24);
  for (float& x : v) x = rng.uniform(-1e3f, 1e3f);
  v[5] = -0.0f;
  v[7] = 1e-40f;  // a subnormal
  write_outputs({{"x", Tensor::from(v, {2, 3, 4})}, {"y", Tensor::from_i32({4, -2}, {2})}},
                s.dir.string());
  const NpyArray x = read_npy(s.path("x.npy")), y = read_npy(s.path("y.npy"));
  CHECK(x.shape == std::vector<int64_t>{2, 3, 4});
  const std::vector<float> back = npy_as_f32(x);
  CHECK(std::memcmp(back.data(), v.data(), v.size() * sizeof(float)) == 0);
  CHECK(y.dtype == "i32");
}

TEST_CASE("kernels tool: inputs are refused with messages that say what and where") {
  auto with = [](const char* name, const char* file) {
    auto in = kCenterInputs;
    in[name] = file;
    return in;
  };
  CHECK(contains(run_error("center", with("features", "bad_features_fortran")), "Fortran order"));
  CHECK(contains(run_error("center", with("features", "bad_features_bigendian")), "big-endian"));
  const std::string f32_labels = run_error("center", with("labels", "bad_labels_f32"));
  CHECK(contains(f32_labels, "labels must be u8, i32 or i64"));
  CHECK(contains(f32_labels, "bad_labels_f32.npy"));
  const std::string wide = run_error("center", with("centers", "bad_centers_wide"));
  CHECK(contains(wide, "dim D is 3 here but 2 in features"));
  CHECK(contains(run_error("center", with("labels", "bad_labels_2d")), "expected shape [B]"));
  CHECK(contains(run_error("center", with("labels", "bad_labels_range")), "label 5"));
  CHECK(contains(
      run_error("softmax-ce", {{"logits", "center_features"}, {"labels", "bad_labels_range"}}),
      "label 5"));
  // Missing, unknown and misspelt things.
  CHECK(contains(
      run_error("center", {{"features", "center_features"}, {"labels", "center_labels_i64"}}),
      "needs input 'centers'"));
  CHECK(contains(run_error("center", with("centres", "center_centers_f64")),
                 "unknown input 'centres'"));
  CHECK(contains(run_error("center", kCenterInputs, {"alhpa=0.5"}), "unknown parameter 'alhpa'"));
  CHECK(contains(run_error("center", kCenterInputs, {"alpha=fast"}), "not a finite number"));
  CHECK(contains(run_error("s2r", kCenterInputs, {"weight_grad=half"}), "full, detached"));
  CHECK(contains(
      run_error("adam", {{"params", "adam_params"}, {"grads", "adam_grads"}}, {"step=1.5"}),
      "not an integer"));
  CHECK(contains(run_error("centre", kCenterInputs), "unknown kernel 'centre'"));
}

TEST_CASE("kernels tool: every kernel agrees with its CPU reference on random shapes") {
  Rng draw(11);
  for (const KernelSpec& k : registry()) {
    for (size_t s = 0; s < std::max<size_t>(2, k.check_params.size()); ++s) {
      const std::string settings = random_settings(k, draw, s);
      CAPTURE(k.name);
      CAPTURE(settings);
      Params p = parse_params(k, {});
      const Dims dims = parse_size(k, settings, p);
      TensorMap in = random_inputs(k, dims, p, 100 + s, Device::cpu);
      TensorMap pristine;
      for (const auto& [n, t] : in) pristine[n] = t.clone();
      const TensorMap ours = k.run(in, p);
      for (const auto& spec : k.references) {
        if (spec.gpu_only || !spec.verify) continue;
        auto ref = spec.make(pristine, p);
        ref->run();
        for (const auto& [name, t] : ref->outputs()) {
          CAPTURE(name);
          REQUIRE(ours.count(name));
          CHECK(relative_error(ours.at(name), t) <= k.ref_rtol);
        }
      }
    }
  }
}

TEST_CASE("kernels tool: check without a GPU says so and succeeds") {
  std::string why;
  if (cuda_available(&why)) {
    MESSAGE("a GPU answers here: check is exercised by sigmar-kernels check itself");
    return;
  }
  std::ostringstream out;
  CHECK(check_command({}, out) == 0);
  CHECK(contains(out.str(), "no GPU here"));
}

TEST_CASE("kernels tool: bench verifies, times and writes JSON") {
  ScratchDir s("kernels-bench");
  BenchOptions o;
  o.kernel = "center";
  o.sizes = {"B=64,D=8"};
  o.seconds = 0.02;
  o.json_path = s.path("bench.json");
  std::ostringstream out;
  CHECK(bench_command(o, out) == 0);
  CHECK(contains(out.str(), "unfused chain"));
  std::ifstream f(o.json_path);
  const nlohmann::json j = nlohmann::json::parse(f);
  CHECK(j["limits"]["copy_GBps"].get<double>() > 0);
  CHECK(j["limits"]["fma_GFLOPps"].get<double>() > 0);
  REQUIRE(j["rows"].size() == 1);
  const auto& row = j["rows"][0];
  CHECK(row["kernel"] == "center");
  CHECK(row["us"].get<double>() > 0);
  CHECK(row["references"][0]["agrees"] == true);
}

TEST_CASE("kernels tool: the binary runs a kernel and reports errors on stderr") {
  ScratchDir s("kernels-binary");
  const std::string bin = SIGMAR_KERNELS_BIN;
  const std::string ok = bin + " run center --in features=" + fixture("center_features") +
                         " --in labels=" + fixture("center_labels_u8") +
                         " --in centers=" + fixture("center_centers_f64") +
                         " --param alpha=0.5 --out " + s.path("out") + " > " + s.path("stdout") +
                         " 2>&1";
  CHECK(std::system(ok.c_str()) == 0);
  CHECK(fs::exists(s.path("out/centers.npy")));
  CHECK(fs::exists(s.path("out/grad_features.npy")));
  const std::string bad = bin + " run centre --out " + s.path("out") + " 2> " + s.path("stderr");
  CHECK(std::system(bad.c_str()) != 0);
  CHECK(contains(read_text(s.path("stderr")), "unknown kernel 'centre'"));
  const std::string check = bin + " check > " + s.path("check") + " 2>&1";
  if (!cuda_available()) {
    CHECK(std::system(check.c_str()) == 0);
    // Asking for the GPU where there is none names the reason and the way out, up front.
    const std::string gpu = ok.substr(0, ok.find(" > ")) + " --device cuda 2> " +
                            s.path("gpu_stderr");
    CHECK(std::system(gpu.c_str()) != 0);
    const std::string msg = read_text(s.path("gpu_stderr"));
    CHECK(contains(msg, "--device cuda: "));
    CHECK(contains(msg, "use --device cpu"));
  }
}
