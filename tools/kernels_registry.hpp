// The kernel lab's one table (sigmar-kernels): every kernel of the engine described once, by
// name, inputs, parameters and outputs (SPEC names), with how to run it through the Backend,
// how to make random inputs of a size, its bytes and FLOPs, its reference and its tolerances.
// `list`, `run`, `check` and `bench` all read this table; nothing is written per kernel twice.
//
// Sizes are named dims (B batch, C classes, D feature width, N elements, ...). An input's shape
// is a list of dim names; reading .npy files binds the names and checks every later use, so a
// mismatch is reported as "centers [3,4]: dim D is 4 here but 2 in features".
#pragma once

#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/backend.hpp"
#include "tools/kernels_reference.hpp"

namespace sigmar {
class Rng;
}

namespace sigmar::lab {

using Dims = std::map<std::string, int64_t>;

// How an input is filled: for random inputs (check, bench) and, for an optional input that
// is left out, what stands in for it (`required` means it may not be left out; `omitted`
// means the kernel runs without it, e.g. a convolution without bias).
enum class Fill { required, normal, labels, positive, zeros, ones, omitted };

struct InputSpec {
  std::string name;
  std::vector<std::string> shape;  // dim names; a name ending in '?' may be absent (size 1)
  bool labels = false;             // integer class labels in [0, C)
  Fill random = Fill::normal;
  Fill absent = Fill::required;
  std::string doc;
};

struct ParamSpec {
  std::string name;
  std::string fallback;              // the default, as written on the command line
  std::vector<std::string> choices;  // accepted words (the value is the index); empty: number
  bool integer = false;
  std::string doc;
};

struct OutputSpec {
  std::string name;  // written as NAME.npy
  std::string doc;
};

struct Cost {
  double bytes = 0;  // compulsory traffic: every input read once, every output written once
  double flops = 0;  // exp, log, sqrt and division count as one each
};

// A way to time something beside our kernel. `verify`: its outputs must match ours (a chain,
// a library doing the same math); otherwise it is a bound (an empty launch, a bare GEMM).
struct RefSpec {
  std::string name;
  bool verify = true;
  bool gpu_only = false;
  std::function<std::unique_ptr<Reference>(const TensorMap&, const Params&)> make;
};

struct KernelSpec {
  std::string name;
  std::string summary;
  std::vector<InputSpec> inputs;
  std::vector<ParamSpec> params;
  std::vector<OutputSpec> outputs;
  // Dims computed from the others and the params (a convolution's Ho, Wo); may be null.
  std::vector<std::string> derived;
  std::function<void(Dims&, const Params&)> derive;
  // Our kernel through the Backend of the inputs' device: state inputs are updated in place
  // and returned among the outputs.
  std::function<TensorMap(TensorMap&, const Params&)> run;
  std::vector<RefSpec> references;
  std::function<Cost(const Dims&, const Params&)> cost;
  Dims sizes;                             // the default size (list, check's starting point)
  std::vector<std::string> bench_sizes;   // "B=1024,D=128": dims (and params) over `sizes`
  Dims check_lo, check_hi;                // ranges of the random shapes `check` draws
  std::vector<std::string> check_params;  // param settings ("k=v,k=v") check cycles through
  // Largest |ours − reference| / max|reference| allowed per output tensor, GPU vs CPU twin
  // (check) and ours vs a verifying reference (bench); each set in kernels_registry.cpp with
  // the reason for its size.
  double check_rtol = 1e-5;
  double ref_rtol = 1e-4;
};

// ---- the table ---------------------------------------------------------------------------------
const std::vector<KernelSpec>& registry();
// Throws std::invalid_argument naming the unknown kernel and listing the known ones.
const KernelSpec& find_kernel(const std::string& name);

// ---- parameters, sizes and inputs --------------------------------------------------------------
// Defaults overridden by "k=v" settings; unknown names and bad values are errors naming them.
Params parse_params(const KernelSpec& k, const std::vector<std::string>& settings);
// "B=1024,D=128" over k.sizes; a name that is a param sets the param in `params`.
Dims parse_size(const KernelSpec& k, const std::string& text, Params& params);
std::string size_str(const KernelSpec& k, const Dims& dims);

// Inputs read from .npy files (NAME -> path) onto `device`: f32/f64 for values, u8/i32/i64
// for labels; shapes checked against the spec. Missing required inputs, unknown names and
// shape mismatches are std::invalid_argument errors that name the input and the fix.
TensorMap load_inputs(const KernelSpec& k, const std::map<std::string, std::string>& files,
                      const Params& params, Device device, Dims* dims_out = nullptr);
// Random inputs of `dims` (after derive) on `device`, reproducible from `seed`.
TensorMap random_inputs(const KernelSpec& k, const Dims& dims, const Params& params, uint64_t seed,
                        Device device);
// A random shape for check and the tests: each dim of k.check_hi drawn in [check_lo, check_hi],
// then the `index`-th entry of k.check_params (cycling), as text for parse_size.
std::string random_settings(const KernelSpec& k, Rng& rng, size_t index);
// The dims of a set of inputs (bound from their shapes, then derived).
Dims bind_dims(const KernelSpec& k, const TensorMap& inputs, const Params& params);

// Every output as NAME.npy under dir (created): f32, or i32 for integer tensors.
void write_outputs(const TensorMap& outputs, const std::string& dir);

// Largest |a − b| / max|b| over one tensor pair (0 for two empty tensors; infinite when shapes
// differ or a NaN appears in one only); equal infinities count as equal.
double relative_error(const Tensor& a, const Tensor& b);

// ---- the commands (sigmar-kernels SUBCOMMAND); each returns the exit status --------------------
struct RunOptions {
  std::string kernel;
  std::map<std::string, std::string> inputs;  // NAME -> FILE.npy
  std::vector<std::string> params;            // k=v
  std::string out_dir;
  Device device = Device::cpu;
};
int list_command(const std::string& kernel, std::ostream& out);
int run_command(const RunOptions& o, std::ostream& out);

struct CheckOptions {
  std::string kernel;  // empty: all
  int shapes = 4;      // random shapes per kernel
  uint64_t seed = 1;
};
int check_command(const CheckOptions& o, std::ostream& out);

struct BenchOptions {
  std::string kernel;              // empty: all
  std::vector<std::string> sizes;  // empty: each kernel's bench_sizes
  Device device = Device::cpu;
  double seconds = 0.4;  // time budget per kernel and size (ours and references)
  int warmup = 3;
  std::string json_path;  // empty: none
  int threads = 0;        // 0: leave OpenMP's default
};
int bench_command(const BenchOptions& o, std::ostream& out);

}  // namespace sigmar::lab
