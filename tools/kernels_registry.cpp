// The kernel table of sigmar-kernels (kernels_registry.hpp) and what reads it without timing:
// parameters, sizes, .npy inputs with their shape checks, random inputs, output files, and the
// `list` and `run` commands. Each kernel is one entry of data plus a short lambda that calls
// the Backend (or the autograd ops, for layers), so --device cuda runs the same code.
#include "tools/kernels_registry.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <ostream>
#include <sstream>
#include <stdexcept>

#include "engine/npy.hpp"
#include "engine/ops.hpp"
#include "engine/rng.hpp"

namespace sigmar::lab {

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? sep : "") + parts[i];
  return s;
}

// ---- helpers the entries share -----------------------------------------------------------------

double prm(const Params& p, const char* name) { return p.at(name); }
int64_t dim(const Dims& d, const char* name) { return d.at(name); }

// A fresh leaf over x's storage that collects its own gradient (layers run through autograd,
// so the engine's wrapper and graph are part of what is run and timed).
Tensor leaf(const Tensor& x) {
  if (!x.defined()) return x;
  Tensor t = x.view(x.shape());
  t.set_requires_grad(true);
  return t;
}

// The incoming gradient of a layer's output: grad_y when given, else ones (d sum(y)).
Tensor seed_for(const Tensor& y, const TensorMap& in) {
  auto it = in.find("grad_y");
  if (it != in.end() && it->second.defined()) return it->second;
  return Tensor::full(y.shape(), 1.0f, y.device());
}

// Runs y = forward(leaves) and its backward, returning y and grad_<name> for every leaf.
TensorMap layer_run(TensorMap& in, const std::vector<std::string>& diff,
                    const std::function<Tensor(TensorMap&)>& forward) {
  TensorMap leaves = in;
  for (const auto& n : diff) leaves[n] = leaf(in[n]);
  Tensor y = forward(leaves);
  y.backward(seed_for(y, in));
  TensorMap out{{"y", y}};
  for (const auto& n : diff)
    if (leaves[n].defined()) out["grad_" + n] = leaves[n].grad();
  return out;
}

RefSpec chain(ChainFn fn) {
  return {"unfused chain", true, false,
          [fn](const TensorMap& in, const Params& p) { return chain_reference(fn, in, p); }};
}

// ---- the entries -------------------------------------------------------------------------------

InputSpec features_in() {
  return {"features",   {"B", "D"},     false,
          Fill::normal, Fill::required, "feature vectors x_i, float [B,D]"};
}
InputSpec labels_in() {
  return {"labels",     {"B"},          true,
          Fill::labels, Fill::required, "class labels y_i in [0, C): u8, i32 or i64 [B]"};
}
InputSpec centers_in() {
  return {"centers",    {"C", "D"},     false,
          Fill::normal, Fill::required, "class centers c_j [C,D] (state, updated)"};
}

KernelSpec softmax_ce() {
  KernelSpec k;
  k.name = "softmax-ce";
  k.summary = "softmax cross-entropy, loss and gradient in one pass (SPEC 2.1)";
  k.inputs = {{"logits", {"B", "C"}, false, Fill::normal, Fill::required, "logits z [B,C]"},
              labels_in()};
  k.outputs = {{"loss", "mean cross-entropy [1]"},
               {"grad_logits", "(softmax(z) - onehot(y)) / B [B,C]"}};
  k.run = [](TensorMap& in, const Params&) {
    LossOut o = backend_of(in["logits"]).softmax_ce(in["logits"], in["labels"]);
    return TensorMap{{"loss", o.loss}, {"grad_logits", o.grad}};
  };
  k.references = {chain(chain_softmax_ce), {"empty launch", false, true, empty_launch}};
  k.cost = [](const Dims& d, const Params&) {
    const double e = double(dim(d, "B")) * dim(d, "C");
    return Cost{4.0 * (2 * e + dim(d, "B")), 6.0 * e};
  };
  k.sizes = {{"B", 128}, {"C", 10}};
  k.bench_sizes = {"B=128", "B=1024", "B=4096", "B=16384,C=1000", "B=131072,C=1000"};
  k.check_lo = {{"B", 1}, {"C", 1}};
  k.check_hi = {{"B", 300}, {"C", 40}};
  // Both sides sum the C exponentials in double and round once: a few float ulps remain.
  k.check_rtol = 1e-5;
  // The chain's exponentials are float (and its GPU sums too): ~C·2^-24 relative at worst.
  k.ref_rtol = 1e-4;
  return k;
}

KernelSpec center() {
  KernelSpec k;
  k.name = "center";
  k.summary = "center loss, its gradient and the center update with rate alpha (SPEC 2.2)";
  k.inputs = {features_in(), labels_in(), centers_in()};
  k.params = {{"alpha", "0.5", {}, false, "center update rate in (0, 1]"}};
  k.outputs = {{"loss", "L_C = 1/(2B) sum |x_i - c_y_i|^2 [1]"},
               {"grad_features", "(x_i - c_y_i) / B [B,D]"},
               {"centers", "centers after the update [C,D]"}};
  k.run = [](TensorMap& in, const Params& p) {
    Backend& b = backend_of(in["features"]);
    LossOut o = b.center_loss(in["features"], in["labels"], in["centers"]);
    b.center_update(in["features"], in["labels"], in["centers"], float(prm(p, "alpha")));
    return TensorMap{{"loss", o.loss}, {"grad_features", o.grad}, {"centers", in["centers"]}};
  };
  k.references = {chain(chain_center)};
  k.cost = [](const Dims& d, const Params&) {
    const double bd = double(dim(d, "B")) * dim(d, "D"), cd = double(dim(d, "C")) * dim(d, "D");
    return Cost{4.0 * (2 * bd + 2 * cd + dim(d, "B")), 7.0 * bd};
  };
  k.sizes = {{"B", 128}, {"D", 2}, {"C", 10}};
  k.bench_sizes = {"B=128,D=2",    "B=1024,D=2",    "B=1024,D=128",  "B=4096,D=128",
                   "B=4096,D=512", "B=65536,D=512", "B=262144,D=512"};
  k.check_lo = {{"B", 1}, {"D", 1}, {"C", 1}};
  k.check_hi = {{"B", 200}, {"D", 70}, {"C", 12}};
  k.check_params = {"", "alpha=1"};
  // Sums of D squares and per-class sums in double on both sides; outputs rounded once.
  k.check_rtol = 1e-5;
  k.ref_rtol = 1e-5;
  return k;
}

KernelSpec snnl() {
  KernelSpec k;
  k.name = "snnl";
  k.summary = "soft nearest neighbour loss and its exact gradient (SPEC 2.3)";
  k.inputs = {features_in(), labels_in()};
  k.params = {{"temperature", "1", {}, false, "temperature T > 0"}};
  k.outputs = {{"loss", "mean of l_i over anchors with a same-class partner [1]"},
               {"grad_features", "d loss / d x [B,D]"}};
  k.run = [](TensorMap& in, const Params& p) {
    LossOut o =
        backend_of(in["features"]).snnl(in["features"], in["labels"], float(prm(p, "temperature")));
    return TensorMap{{"loss", o.loss}, {"grad_features", o.grad}};
  };
  k.references = {chain(chain_snnl), {"GEMM X·Xᵀ", false, false, gram_library}};
  // The useful work of a GEMM formulation: B²·D for the distances (X·Xᵀ is symmetric) and
  // 2·B²·D for the gradient's S·X, plus about ten operations per pair.
  k.cost = [](const Dims& d, const Params&) {
    const double B = double(dim(d, "B")), D = double(dim(d, "D"));
    return Cost{4.0 * (2 * B * D + B), 3.0 * B * B * D + 10.0 * B * B};
  };
  k.sizes = {{"B", 128}, {"D", 2}, {"C", 10}};
  k.bench_sizes = {"B=128,D=2", "B=1024,D=2", "B=1024,D=128", "B=4096,D=2", "B=4096,D=128"};
  k.check_lo = {{"B", 2}, {"D", 1}, {"C", 1}};
  k.check_hi = {{"B", 150}, {"D", 40}, {"C", 6}};
  k.check_params = {"", "temperature=0.3", "temperature=4"};
  // Exponentials of B-long rows summed in different orders, then differences of log-sums.
  k.check_rtol = 1e-4;
  // The chain forms distances as |a|²+|b|²−2a·b in float, which cancels for close points.
  k.ref_rtol = 2e-3;
  return k;
}

KernelSpec s2r() {
  KernelSpec k;
  k.name = "s2r";
  k.summary = "sigma-squared reduction loss, gradient and state update (SPEC 2.4)";
  k.inputs = {features_in(),
              labels_in(),
              centers_in(),
              {"variances",
               {"C"},
               false,
               Fill::positive,
               Fill::zeros,
               "class variances v_j >= 0 [C] (state, updated)"}};
  k.params = {{"alpha", "0.5", {}, false, "state update rate in (0, 1]"},
              {"slope", "1", {}, false, "sigmoid slope k > 0"},
              {"weight_grad",
               "full",
               {"full", "detached"},
               false,
               "detached drops the d·dw/dd term of the gradient"},
              {"eps", "1e-6", {}, false, "added to the class variance in z"}};
  k.outputs = {{"loss", "1/(2B) sum w_i d_i [1]"},
               {"grad_features", "d loss / d x [B,D]"},
               {"centers", "centers after the update [C,D]"},
               {"variances", "variances after the update [C]"}};
  k.run = [](TensorMap& in, const Params& p) {
    Backend& b = backend_of(in["features"]);
    S2RSettings s{float(prm(p, "slope")), prm(p, "weight_grad") == 1, float(prm(p, "eps"))};
    LossOut o = b.s2r_loss(in["features"], in["labels"], in["centers"], in["variances"], s);
    b.s2r_update(in["features"], in["labels"], in["centers"], in["variances"],
                 float(prm(p, "alpha")));
    return TensorMap{{"loss", o.loss},
                     {"grad_features", o.grad},
                     {"centers", in["centers"]},
                     {"variances", in["variances"]}};
  };
  k.references = {chain(chain_s2r)};
  k.cost = [](const Dims& d, const Params&) {
    const double bd = double(dim(d, "B")) * dim(d, "D"), cd = double(dim(d, "C")) * dim(d, "D");
    const double B = double(dim(d, "B")), C = double(dim(d, "C"));
    return Cost{4.0 * (2 * bd + 2 * cd + B + 2 * C), 7.0 * bd + 20.0 * B};
  };
  k.sizes = {{"B", 128}, {"D", 2}, {"C", 10}};
  k.bench_sizes = {"B=128,D=2",    "B=1024,D=2",    "B=1024,D=128",  "B=4096,D=128",
                   "B=4096,D=512", "B=65536,D=512", "B=262144,D=512"};
  k.check_lo = {{"B", 1}, {"D", 1}, {"C", 1}};
  k.check_hi = {{"B", 200}, {"D", 70}, {"C", 12}};
  k.check_params = {"", "weight_grad=detached", "slope=3,alpha=1"};
  k.check_rtol = 1e-5;
  // The chain's z = (d − v)/(v + ε) in float loses bits when d is close to v.
  k.ref_rtol = 1e-4;
  return k;
}

InputSpec flat(const char* name, Fill random, Fill absent, const char* doc) {
  return {name, {"N"}, false, random, absent, doc};
}

KernelSpec sgd() {
  KernelSpec k;
  k.name = "sgd";
  k.summary = "SGD update in place: L2 weight decay, momentum, Nesterov (SPEC 6, PyTorch)";
  k.inputs = {flat("params", Fill::normal, Fill::required, "parameters w [any shape]"),
              flat("grads", Fill::normal, Fill::required, "gradients g, shaped like params"),
              flat("m", Fill::normal, Fill::zeros, "momentum buffer b")};
  k.params = {{"lr", "0.01", {}, false, "learning rate"},
              {"momentum", "0", {}, false, "momentum mu"},
              {"weight_decay", "0", {}, false, "L2 weight decay added to g"},
              {"nesterov", "false", {"false", "true"}, false, "Nesterov momentum"}};
  k.outputs = {{"params", "updated parameters"}, {"m", "updated momentum buffer"}};
  k.run = [](TensorMap& in, const Params& p) {
    SgdSettings s{float(prm(p, "lr")), float(prm(p, "momentum")), float(prm(p, "weight_decay")),
                  prm(p, "nesterov") == 1};
    backend_of(in["params"]).sgd_step(in["params"], in["grads"], in["m"], s);
    return TensorMap{{"params", in["params"]}, {"m", in["m"]}};
  };
  k.references = {chain(chain_sgd)};
  k.cost = [](const Dims& d, const Params& p) {
    const double n = double(dim(d, "N"));
    const bool mom = prm(p, "momentum") != 0;
    return Cost{4.0 * n * (mom ? 5 : 3), n * (2 + (prm(p, "weight_decay") != 0 ? 2 : 0) +
                                              (mom ? 2 : 0) + (prm(p, "nesterov") == 1 ? 2 : 0))};
  };
  k.sizes = {{"N", 1 << 20}};
  k.bench_sizes = {"N=65536,momentum=0.9", "N=1048576,momentum=0.9", "N=16777216,momentum=0.9",
                   "N=67108864,momentum=0.9", "N=67108864"};
  k.check_lo = {{"N", 1}};
  k.check_hi = {{"N", 5000}};
  k.check_params = {"momentum=0.9,weight_decay=0.01", "momentum=0.9,nesterov=true", "lr=0.5"};
  // One multiply-add chain per element: only FMA contraction can differ (≤ a few ulps).
  k.check_rtol = 2e-6;
  k.ref_rtol = 2e-6;
  return k;
}

KernelSpec adam() {
  KernelSpec k;
  k.name = "adam";
  k.summary = "Adam / AdamW update in place with bias correction (SPEC 6, PyTorch)";
  k.inputs = {flat("params", Fill::normal, Fill::required, "parameters w [any shape]"),
              flat("grads", Fill::normal, Fill::required, "gradients g, shaped like params"),
              flat("m", Fill::normal, Fill::zeros, "first moment"),
              flat("v", Fill::positive, Fill::zeros, "second moment")};
  k.params = {{"lr", "0.001", {}, false, "learning rate"},
              {"beta1", "0.9", {}, false, "first-moment decay"},
              {"beta2", "0.999", {}, false, "second-moment decay"},
              {"eps", "1e-8", {}, false, "added to sqrt(v_hat)"},
              {"weight_decay", "0", {}, false, "L2 (Adam) or decoupled (AdamW) decay"},
              {"decoupled", "false", {"false", "true"}, false, "AdamW's decoupled decay"},
              {"step", "1", {}, true, "step count t >= 1 of this update"}};
  k.outputs = {{"params", "updated parameters"},
               {"m", "updated first moment"},
               {"v", "updated second moment"}};
  k.run = [](TensorMap& in, const Params& p) {
    AdamSettings s{float(prm(p, "lr")),  float(prm(p, "beta1")),        float(prm(p, "beta2")),
                   float(prm(p, "eps")), float(prm(p, "weight_decay")), prm(p, "decoupled") == 1};
    backend_of(in["params"])
        .adam_step(in["params"], in["grads"], in["m"], in["v"], int64_t(prm(p, "step")), s);
    return TensorMap{{"params", in["params"]}, {"m", in["m"]}, {"v", in["v"]}};
  };
  k.references = {chain(chain_adam)};
  k.cost = [](const Dims& d, const Params&) {
    const double n = double(dim(d, "N"));
    return Cost{4.0 * n * 7, 14.0 * n};
  };
  k.sizes = {{"N", 1 << 20}};
  k.bench_sizes = {"N=65536", "N=1048576", "N=16777216", "N=67108864"};
  k.check_lo = {{"N", 1}};
  k.check_hi = {{"N", 5000}};
  k.check_params = {"", "weight_decay=0.1,step=7", "weight_decay=0.1,decoupled=true,step=300"};
  // sqrt and a division per element, bias corrections formed in double then rounded.
  k.check_rtol = 4e-6;
  k.ref_rtol = 1e-5;
  return k;
}

InputSpec grad_y(std::vector<std::string> shape, const char* doc) {
  return {"grad_y", std::move(shape), false, Fill::normal, Fill::ones, doc};
}

KernelSpec prelu() {
  KernelSpec k;
  k.name = "prelu";
  k.summary = "PReLU forward and backward through autograd (per-channel or shared slope)";
  k.inputs = {{"x",
               {"N", "Ch", "H?", "W?"},
               false,
               Fill::normal,
               Fill::required,
               "input [N,Ch] or [N,Ch,H,W]"},
              {"weight",
               {"Cw"},
               false,
               Fill::positive,
               Fill::required,
               "slopes: [Ch], or [1] shared by every channel"},
              grad_y({"N", "Ch", "H?", "W?"}, "d loss / d y, shaped like x")};
  k.outputs = {
      {"y", "x > 0 ? x : a·x"}, {"grad_x", "d loss / d x"}, {"grad_weight", "d loss / d a"}};
  k.derive = [](Dims& d, const Params&) {
    if (!d.count("Cw")) d["Cw"] = d.at("Ch");
    if (d["Cw"] != 1 && d["Cw"] != d.at("Ch"))
      bad(fmt::format("weight has {} slopes; PReLU needs 1 (shared) or Ch = {} (per channel)",
                      d["Cw"], d.at("Ch")));
  };
  k.run = [](TensorMap& in, const Params&) {
    return layer_run(in, {"x", "weight"},
                     [](TensorMap& l) { return ops::prelu(l["x"], l["weight"]); });
  };
  k.references = {chain(chain_prelu)};
  k.cost = [](const Dims& d, const Params&) {
    const double e = double(dim(d, "N")) * dim(d, "Ch") * dim(d, "H") * dim(d, "W");
    return Cost{4.0 * (4 * e + 2 * dim(d, "Cw")), 4.0 * e};
  };
  k.sizes = {{"N", 128}, {"Ch", 32}, {"H", 28}, {"W", 28}};
  k.bench_sizes = {"N=128,Ch=32,H=28,W=28", "N=128,Ch=128,H=7,W=7", "N=4096,Ch=2,H=1,W=1,Cw=1",
                   "N=256,Ch=64,H=56,W=56"};
  k.check_lo = {{"N", 1}, {"Ch", 1}, {"H", 1}, {"W", 1}};
  k.check_hi = {{"N", 8}, {"Ch", 9}, {"H", 9}, {"W", 9}};
  k.check_params = {"", "Cw=1"};
  // dx is exact; the slope gradient sums N·H·W products in double on both sides.
  k.check_rtol = 2e-6;
  k.ref_rtol = 1e-5;
  return k;
}

KernelSpec conv2d() {
  KernelSpec k;
  k.name = "conv2d";
  k.summary = "2-D convolution forward and backward through autograd (oneDNN / cuDNN)";
  k.inputs = {
      {"x", {"N", "Cin", "H", "W"}, false, Fill::normal, Fill::required, "input [N,Cin,H,W]"},
      {"weight",
       {"Cout", "Cin", "KH", "KW"},
       false,
       Fill::normal,
       Fill::required,
       "filters [Cout,Cin,KH,KW]"},
      {"bias", {"Cout"}, false, Fill::normal, Fill::omitted, "bias [Cout]"},
      grad_y({"N", "Cout", "Ho", "Wo"}, "d loss / d y [N,Cout,Ho,Wo]")};
  k.params = {{"stride", "1", {}, true, "stride >= 1"},
              {"pad", "0", {}, true, "zero padding on every side"}};
  k.outputs = {{"y", "output [N,Cout,Ho,Wo]"},
               {"grad_x", "d loss / d x"},
               {"grad_weight", "d loss / d weight"},
               {"grad_bias", "d loss / d bias"}};
  k.derived = {"Ho", "Wo"};
  k.derive = [](Dims& d, const Params& p) {
    const int64_t s = int64_t(prm(p, "stride")), pad = int64_t(prm(p, "pad"));
    if (s < 1 || pad < 0) bad("conv2d: stride must be >= 1 and pad >= 0");
    d["Ho"] = (d.at("H") + 2 * pad - d.at("KH")) / s + 1;
    d["Wo"] = (d.at("W") + 2 * pad - d.at("KW")) / s + 1;
    if (d.at("H") + 2 * pad < d.at("KH") || d.at("W") + 2 * pad < d.at("KW"))
      bad(fmt::format("conv2d: a {}x{} filter does not fit a {}x{} input with pad {}", d.at("KH"),
                      d.at("KW"), d.at("H"), d.at("W"), pad));
  };
  k.run = [](TensorMap& in, const Params& p) {
    Conv2dArgs a{int(prm(p, "stride")), int(prm(p, "pad"))};
    return layer_run(in, {"x", "weight", "bias"},
                     [a](TensorMap& l) { return ops::conv2d(l["x"], l["weight"], l["bias"], a); });
  };
  k.references = {{"library", true, false, conv2d_library}};
  k.cost = [](const Dims& d, const Params&) {
    const double N = double(dim(d, "N")), Ci = double(dim(d, "Cin")), Co = double(dim(d, "Cout"));
    const double xs = N * Ci * dim(d, "H") * dim(d, "W"), ys = N * Co * dim(d, "Ho") * dim(d, "Wo");
    const double ws = Co * Ci * dim(d, "KH") * dim(d, "KW");
    return Cost{4.0 * (2 * xs + 2 * ws + 2 * ys + 2 * Co),
                3.0 * 2.0 * ys * Ci * dim(d, "KH") * dim(d, "KW")};
  };
  k.sizes = {{"N", 128}, {"Cin", 32}, {"H", 28}, {"W", 28}, {"Cout", 32}, {"KH", 5}, {"KW", 5}};
  // LeNet++'s convolutions 1, 2 (the target), 3 and 6 at batch 128, and a ResNet-18 3x3.
  k.bench_sizes = {"Cin=1,pad=2", "pad=2", "Cout=64,H=14,W=14,pad=2",
                   "Cin=128,Cout=128,H=7,W=7,pad=2", "Cin=64,Cout=64,H=32,W=32,KH=3,KW=3,pad=1"};
  k.check_lo = {{"N", 1}, {"Cin", 1}, {"H", 5}, {"W", 5}, {"Cout", 1}, {"KH", 1}, {"KW", 1}};
  k.check_hi = {{"N", 4}, {"Cin", 6}, {"H", 14}, {"W", 14}, {"Cout", 7}, {"KH", 5}, {"KW", 5}};
  k.check_params = {"", "pad=1", "pad=2,stride=2"};
  // Sums of Cin·KH·KW (or N·Ho·Wo) products in library-chosen orders: worst case ~K·2^-24.
  k.check_rtol = 1e-4;
  k.ref_rtol = 1e-4;
  return k;
}

KernelSpec linear() {
  KernelSpec k;
  k.name = "linear";
  k.summary = "linear layer y = x·Wᵀ + b, forward and backward through autograd";
  k.inputs = {{"x", {"N", "In"}, false, Fill::normal, Fill::required, "input [N,In]"},
              {"weight", {"Out", "In"}, false, Fill::normal, Fill::required, "weight W [Out,In]"},
              {"bias", {"Out"}, false, Fill::normal, Fill::omitted, "bias [Out]"},
              grad_y({"N", "Out"}, "d loss / d y [N,Out]")};
  k.outputs = {{"y", "x·Wᵀ + b [N,Out]"},
               {"grad_x", "dy·W"},
               {"grad_weight", "dyᵀ·x"},
               {"grad_bias", "column sums of dy"}};
  k.run = [](TensorMap& in, const Params&) {
    return layer_run(in, {"x", "weight", "bias"},
                     [](TensorMap& l) { return ops::linear(l["x"], l["weight"], l["bias"]); });
  };
  k.references = {{"library", true, false, linear_library}};
  k.cost = [](const Dims& d, const Params&) {
    const double N = double(dim(d, "N")), I = double(dim(d, "In")), O = double(dim(d, "Out"));
    return Cost{4.0 * (2 * N * I + 2 * O * I + 2 * N * O + 2 * O), 6.0 * N * I * O};
  };
  k.sizes = {{"N", 128}, {"In", 1152}, {"Out", 2}};
  k.bench_sizes = {"N=128,In=1152,Out=2", "N=128,In=2,Out=10", "N=4096,In=512,Out=512",
                   "N=1024,In=4096,Out=4096"};
  k.check_lo = {{"N", 1}, {"In", 1}, {"Out", 1}};
  k.check_hi = {{"N", 40}, {"In", 60}, {"Out", 30}};
  k.check_rtol = 1e-4;
  k.ref_rtol = 1e-4;
  return k;
}

// ---- parsing -----------------------------------------------------------------------------------

double parse_number(const std::string& text, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(v))
    bad(what + ": '" + text + "' is not a finite number");
  return v;
}

double parse_value(const ParamSpec& s, const std::string& text, const std::string& kernel) {
  const std::string what = "kernel " + kernel + ", parameter " + s.name;
  if (!s.choices.empty()) {
    for (size_t i = 0; i < s.choices.size(); ++i)
      if (text == s.choices[i] || text == std::to_string(i)) return double(i);
    bad(what + ": '" + text + "' is not one of " + join(s.choices, ", "));
  }
  const double v = parse_number(text, what);
  if (s.integer && v != std::floor(v)) bad(what + ": '" + text + "' is not an integer");
  return v;
}

const ParamSpec* find_param(const KernelSpec& k, const std::string& name) {
  for (const auto& p : k.params)
    if (p.name == name) return &p;
  return nullptr;
}

std::vector<std::string> param_names(const KernelSpec& k) {
  std::vector<std::string> n;
  for (const auto& p : k.params) n.push_back(p.name);
  return n;
}

std::vector<std::string> input_names(const KernelSpec& k) {
  std::vector<std::string> n;
  for (const auto& i : k.inputs) n.push_back(i.name);
  return n;
}

// ---- shapes ------------------------------------------------------------------------------------

bool optional_dim(const std::string& d) { return !d.empty() && d.back() == '?'; }
std::string dim_name(const std::string& d) {
  return optional_dim(d) ? d.substr(0, d.size() - 1) : d;
}
bool is_derived(const KernelSpec& k, const std::string& d) {
  return std::find(k.derived.begin(), k.derived.end(), d) != k.derived.end();
}

std::string spec_shape(const InputSpec& s) { return "[" + join(s.shape, ",") + "]"; }

// Where each dim got its size, for messages.
struct Binding {
  Dims dims;
  std::map<std::string, std::string> from;
};

// Binds (or checks) the dims of one input; `derived_too` on the second pass.
void bind_input(const KernelSpec& k, const InputSpec& s, const Shape& shape, Binding& b,
                bool derived_too) {
  size_t required = 0;
  for (const auto& d : s.shape) required += optional_dim(d) ? 0 : 1;
  if (shape.size() < required || shape.size() > s.shape.size())
    bad(fmt::format("{} {}: expected shape {} for kernel {}", s.name, shape_str(shape),
                    spec_shape(s), k.name));
  for (size_t i = 0; i < s.shape.size(); ++i) {
    const std::string d = dim_name(s.shape[i]);
    if (is_derived(k, d) && !derived_too) continue;
    const int64_t v = i < shape.size() ? shape[i] : 1;
    auto it = b.dims.find(d);
    if (it == b.dims.end()) {
      b.dims[d] = v;
      b.from[d] = s.name + " " + shape_str(shape);
    } else if (it->second != v) {
      const std::string src = b.from.count(d) ? b.from[d] : "the other inputs and parameters";
      bad(fmt::format("{} {}: dim {} is {} here but {} in {} (kernel {} wants {})", s.name,
                      shape_str(shape), d, v, it->second, src, k.name, spec_shape(s)));
    }
  }
}

Shape shape_of(const InputSpec& s, const Dims& d) {
  Shape shape;
  for (const auto& n : s.shape) shape.push_back(d.at(dim_name(n)));
  return shape;
}

Tensor read_input(const InputSpec& s, const std::string& path, Device device) {
  const NpyArray a = read_npy(path);
  try {
    if (s.labels) return Tensor::from_i32(npy_as_labels(a), a.shape).to(device);
    return Tensor::from(npy_as_f32(a), a.shape).to(device);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument("input " + s.name + " (" + path + "): " + e.what());
  }
}

float normal(Rng& rng) {
  // Box-Muller; u1 in (0, 1] so the log is finite.
  const float u1 = 1.0f - rng.uniform(), u2 = rng.uniform();
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
}

Tensor filled(const InputSpec& s, Fill f, const Dims& d, Rng& rng, Device device) {
  const Shape shape = shape_of(s, d);
  const int64_t n = shape_numel(shape);
  if (f == Fill::labels) {
    const int64_t C = d.count("C") ? d.at("C") : 10;
    std::vector<int32_t> y(n);
    for (auto& v : y) v = int32_t(rng.below(uint64_t(C)));
    return Tensor::from_i32(y, shape, device);
  }
  std::vector<float> v(n);
  for (auto& x : v) {
    switch (f) {
      case Fill::normal:
        x = normal(rng);
        break;
      case Fill::positive:
        x = rng.uniform(0.25f, 2.0f);
        break;
      case Fill::ones:
        x = 1.0f;
        break;
      default:
        x = 0.0f;
        break;
    }
  }
  return Tensor::from(v, shape, device);
}

}  // namespace

// ---- the table ---------------------------------------------------------------------------------

const std::vector<KernelSpec>& registry() {
  static const std::vector<KernelSpec> table = {softmax_ce(), center(), snnl(),   s2r(),   sgd(),
                                                adam(),       prelu(),  conv2d(), linear()};
  return table;
}

const KernelSpec& find_kernel(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& k : registry()) {
    if (k.name == name) return k;
    names.push_back(k.name);
  }
  bad("unknown kernel '" + name + "'; the kernels are: " + join(names, ", ") +
      " (sigmar-kernels list describes them)");
}

Params parse_params(const KernelSpec& k, const std::vector<std::string>& settings) {
  Params p;
  for (const auto& s : k.params) p[s.name] = parse_value(s, s.fallback, k.name);
  for (const auto& kv : settings) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) bad("--param '" + kv + "': write it as NAME=VALUE");
    const std::string name = kv.substr(0, eq);
    const ParamSpec* s = find_param(k, name);
    if (s == nullptr)
      bad("unknown parameter '" + name + "' for kernel " + k.name + "; its parameters are: " +
          (k.params.empty() ? std::string("none") : join(param_names(k), ", ")));
    p[name] = parse_value(*s, kv.substr(eq + 1), k.name);
  }
  return p;
}

Dims parse_size(const KernelSpec& k, const std::string& text, Params& params) {
  Dims d = k.sizes;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string name = item.substr(0, eq);
    if (eq == std::string::npos) bad("size '" + text + "': write it as B=1024,D=128");
    if (const ParamSpec* s = find_param(k, name)) {
      params[name] = parse_value(*s, item.substr(eq + 1), k.name);
      continue;
    }
    const double v = parse_number(item.substr(eq + 1), "size " + name);
    if (v < 1 || v != std::floor(v)) bad("size " + name + " must be a positive integer");
    bool known = d.count(name) > 0;
    for (const auto& in : k.inputs)
      for (const auto& n : in.shape) known = known || (dim_name(n) == name && !is_derived(k, name));
    if (!known) bad("size '" + text + "': kernel " + k.name + " has no dim or parameter " + name);
    d[name] = int64_t(v);
  }
  if (k.derive) k.derive(d, params);
  return d;
}

std::string size_str(const KernelSpec& k, const Dims& dims) {
  // The sized dims in the order the inputs' shapes name them (N, Cin, H, W, Cout, ...).
  std::vector<std::string> order;
  for (const auto& s : k.inputs)
    for (const auto& d : s.shape)
      if (std::find(order.begin(), order.end(), dim_name(d)) == order.end())
        order.push_back(dim_name(d));
  for (const auto& [n, v] : k.sizes)
    if (std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
  std::vector<std::string> parts;
  for (const auto& n : order)
    if (k.sizes.count(n) && dims.count(n)) parts.push_back(n + "=" + std::to_string(dims.at(n)));
  return join(parts, ",");
}

std::string random_settings(const KernelSpec& k, Rng& rng, size_t index) {
  std::string settings;
  for (const auto& [name, hi] : k.check_hi) {
    const int64_t lo = k.check_lo.at(name);
    settings += name + "=" + std::to_string(lo + int64_t(rng.below(uint64_t(hi - lo + 1)))) + ",";
  }
  if (!k.check_params.empty()) settings += k.check_params[index % k.check_params.size()];
  return settings;
}

Dims bind_dims(const KernelSpec& k, const TensorMap& inputs, const Params& params) {
  Binding b;
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& s : k.inputs) {
      auto it = inputs.find(s.name);
      if (it != inputs.end() && it->second.defined())
        bind_input(k, s, it->second.shape(), b, pass == 1);
    }
    if (pass == 0 && k.derive) k.derive(b.dims, params);
  }
  return b.dims;
}

TensorMap load_inputs(const KernelSpec& k, const std::map<std::string, std::string>& files,
                      const Params& params, Device device, Dims* dims_out) {
  for (const auto& [name, path] : files) {
    bool known = false;
    for (const auto& s : k.inputs) known = known || s.name == name;
    if (!known)
      bad("unknown input '" + name + "' for kernel " + k.name +
          "; its inputs are: " + join(input_names(k), ", "));
  }
  TensorMap in;
  for (const auto& s : k.inputs) {
    auto f = files.find(s.name);
    if (f != files.end()) {
      in[s.name] = read_input(s, f->second, device);
    } else if (s.absent == Fill::required) {
      bad("kernel " + k.name + " needs input '" + s.name + "' (" + s.doc + "): add --in " + s.name +
          "=FILE.npy");
    }
  }
  Dims d = bind_dims(k, in, params);
  // Optional inputs left out get their stand-in, sized by the dims the others fixed.
  Rng unused(0);
  for (const auto& s : k.inputs) {
    if (in.count(s.name) || s.absent == Fill::omitted) continue;
    for (const auto& n : s.shape)
      if (!d.count(dim_name(n))) d[dim_name(n)] = 1;
    in[s.name] = filled(s, s.absent, d, unused, device);
  }
  if (dims_out) *dims_out = d;
  return in;
}

TensorMap random_inputs(const KernelSpec& k, const Dims& dims, const Params& params, uint64_t seed,
                        Device device) {
  Dims d = dims;
  if (k.derive) k.derive(d, params);
  Rng rng(seed);
  TensorMap in;
  for (const auto& s : k.inputs) in[s.name] = filled(s, s.random, d, rng, device);
  return in;
}

void write_outputs(const TensorMap& outputs, const std::string& dir) {
  std::filesystem::create_directories(dir);
  for (const auto& [name, t] : outputs) {
    if (!t.defined()) continue;
    const Tensor h = t.to(Device::cpu);
    const std::string path = (std::filesystem::path(dir) / (name + ".npy")).string();
    if (h.dtype() == DType::i32)
      write_npy(path, npy_i32(h.shape(), h.to_vector_i32()));
    else
      write_npy(path, npy_f32(h.shape(), h.to_vector()));
  }
}

double relative_error(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return std::numeric_limits<double>::infinity();
  const std::vector<float> x = a.to(Device::cpu).to_vector(), y = b.to(Device::cpu).to_vector();
  double scale = 0, worst = 0;
  for (float v : y)
    if (std::isfinite(v)) scale = std::max(scale, double(std::fabs(v)));
  if (scale == 0) scale = 1;  // an all-zero reference: absolute error
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == y[i] || (std::isnan(x[i]) && std::isnan(y[i]))) continue;
    if (!std::isfinite(x[i]) || !std::isfinite(y[i]))
      return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::fabs(double(x[i]) - double(y[i])) / scale);
  }
  return worst;
}

// ---- list and run ------------------------------------------------------------------------------

namespace {

std::string fill_word(Fill f) {
  switch (f) {
    case Fill::zeros:
      return "zeros";
    case Fill::ones:
      return "ones";
    case Fill::omitted:
      return "none";
    default:
      return "";
  }
}

void describe(const KernelSpec& k, std::ostream& out) {
  out << k.name << ": " << k.summary << "\n  inputs:\n";
  for (const auto& s : k.inputs) {
    const std::string opt =
        s.absent == Fill::required ? "" : " (optional, default " + fill_word(s.absent) + ")";
    out << fmt::format("    {:<12}{:<18}{}{}\n", s.name, spec_shape(s), s.doc, opt);
  }
  out << "  parameters:" << (k.params.empty() ? " none\n" : "\n");
  for (const auto& p : k.params) {
    const std::string choices = p.choices.empty() ? "" : " (" + join(p.choices, " | ") + ")";
    out << fmt::format("    {:<30}{}{}\n", p.name + "=" + p.fallback, p.doc, choices);
  }
  out << "  outputs:\n";
  for (const auto& o : k.outputs) out << fmt::format("    {:<30}{}\n", o.name + ".npy", o.doc);
  std::vector<std::string> refs;
  for (const auto& r : k.references) refs.push_back(r.name + (r.gpu_only ? " (GPU)" : ""));
  out << "  timed against: " << join(refs, ", ") << "\n";
}

}  // namespace

int list_command(const std::string& kernel, std::ostream& out) {
  if (!kernel.empty()) {
    describe(find_kernel(kernel), out);
    return 0;
  }
  for (const auto& k : registry()) {
    describe(k, out);
    out << "\n";
  }
  return 0;
}

int run_command(const RunOptions& o, std::ostream& out) {
  const KernelSpec& k = find_kernel(o.kernel);
  if (o.out_dir.empty()) bad("run: give an output folder with --out DIR");
  const Params p = parse_params(k, o.params);
  Dims dims;
  TensorMap in = load_inputs(k, o.inputs, p, o.device, &dims);
  TensorMap result = k.run(in, p);
  write_outputs(result, o.out_dir);
  std::vector<std::string> written;
  for (const auto& spec : k.outputs)
    if (result.count(spec.name) && result[spec.name].defined()) written.push_back(spec.name);
  out << k.name << " on " << device_name(o.device) << " (" << size_str(k, dims) << ")";
  if (result.count("loss")) out << fmt::format(": loss = {:.9g}", ops::item(result["loss"]));
  out << "\nwrote " << join(written, ".npy, ") << ".npy to " << o.out_dir << "\n";
  return 0;
}

}  // namespace sigmar::lab
