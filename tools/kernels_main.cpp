// sigmar-kernels: every kernel of the engine on its own (the kernel lab). This file only wires
// the command line to the commands of tools/kernels_registry.hpp:
//   sigmar-kernels list [NAME]
//   sigmar-kernels run NAME --in NAME=FILE.npy ... --out DIR [--device cpu|cuda] [--param k=v]
//   sigmar-kernels check [NAME]
//   sigmar-kernels bench [NAME] [--sizes B=1024,D=128 ...] [--json FILE] [--device cpu|cuda]
#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <stdexcept>

#include "tools/kernels_registry.hpp"

using namespace sigmar;

namespace {

const std::map<std::string, Device> kDevices{{"cpu", Device::cpu}, {"cuda", Device::cuda}};

// "--in logits=z.npy" -> {"logits": "z.npy"}; a repeated name is an error.
std::map<std::string, std::string> input_files(const std::vector<std::string>& items) {
  std::map<std::string, std::string> files;
  for (const auto& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw std::invalid_argument("--in '" + item + "': write it as NAME=FILE.npy");
    if (!files.emplace(item.substr(0, eq), item.substr(eq + 1)).second)
      throw std::invalid_argument("--in: input '" + item.substr(0, eq) + "' given twice");
  }
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sigmar-kernels: list, run, check and time each kernel of sigmar on its own"};
  app.require_subcommand(1);

  std::string list_name;
  CLI::App* list = app.add_subcommand("list", "every kernel: inputs, parameters and outputs");
  list->add_option("name", list_name, "one kernel only");

  lab::RunOptions run;
  std::vector<std::string> run_inputs;
  CLI::App* run_cmd =
      app.add_subcommand("run", "run one kernel on .npy inputs, write .npy outputs");
  run_cmd->add_option("name", run.kernel, "kernel (see list)")->required();
  run_cmd->add_option("--in", run_inputs, "an input, NAME=FILE.npy (repeat for each)");
  run_cmd->add_option("--out", run.out_dir, "folder for NAME.npy outputs")->required();
  run_cmd->add_option("--param", run.params, "a parameter, k=v (repeat for each)");
  run_cmd->add_option("--device", run.device, "cpu or cuda")
      ->transform(CLI::CheckedTransformer(kDevices, CLI::ignore_case));

  lab::CheckOptions check;
  CLI::App* check_cmd = app.add_subcommand("check", "CUDA kernels against their CPU twins");
  check_cmd->add_option("name", check.kernel, "one kernel only");
  check_cmd->add_option("--shapes", check.shapes, "random shapes per kernel")
      ->capture_default_str();
  check_cmd->add_option("--seed", check.seed, "seed of the shapes and inputs")
      ->capture_default_str();

  lab::BenchOptions bench;
  CLI::App* bench_cmd = app.add_subcommand("bench", "time each kernel against its references");
  bench_cmd->add_option("name", bench.kernel, "one kernel only");
  bench_cmd->add_option("--sizes", bench.sizes,
                        "sizes such as B=1024,D=128 (default: the kernel's)");
  bench_cmd->add_option("--device", bench.device, "cpu or cuda")
      ->transform(CLI::CheckedTransformer(kDevices, CLI::ignore_case));
  bench_cmd->add_option("--seconds", bench.seconds, "time budget per row")->capture_default_str();
  bench_cmd->add_option("--warmup", bench.warmup, "warm-up calls")->capture_default_str();
  bench_cmd->add_option("--threads", bench.threads, "CPU threads (default: all)");
  bench_cmd->add_option("--json", bench.json_path, "also write the results as JSON here");

  CLI11_PARSE(app, argc, argv);
  try {
    // Say why there is no GPU before any input is read or any table is printed.
    const bool wants_gpu = (*run_cmd && run.device == Device::cuda) ||
                           (*bench_cmd && bench.device == Device::cuda);
    std::string why;
    if (wants_gpu && !cuda_available(&why)) {
      throw std::runtime_error("--device cuda: " + why + "; use --device cpu");
    }
    if (*list) return lab::list_command(list_name, std::cout);
    if (*run_cmd) {
      run.inputs = input_files(run_inputs);
      return lab::run_command(run, std::cout);
    }
    if (*check_cmd) return lab::check_command(check, std::cout);
    if (*bench_cmd) return lab::bench_command(bench, std::cout);
  } catch (const std::exception& e) {
    std::cerr << "sigmar-kernels: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
