// sigmar-train: trains a network with cross-entropy plus an optional feature-space loss and
// writes config.json, metrics.csv, classes.csv and a checkpoint per epoch into --out.
// This file only turns flags into a TrainConfig; engine/trainer.cpp does the work.
#include "engine/tensor_file.hpp"
#include "engine/trainer.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <vector>

namespace {

using sigmar::TrainConfig;

// Defaults of each feature-space loss: λ, α (state rate), T (SNNL), k (σ²R). Chosen with
// tools/tune_loss_defaults.py (1 epoch, 10,000 Fashion-MNIST images, D = 2): for each loss,
// the largest λ whose test accuracy is within one point of the best of its grid; SNNL's T is
// the one with the lower intra_ratio there. The README has the table.
struct LossDefaults {
  float lambda, alpha, temperature, slope;
};
const std::map<std::string, LossDefaults> kLossDefaults = {
    {"ce", {0.0f, 0.5f, 1.0f, 1.0f}},
    {"center", {0.03f, 0.5f, 1.0f, 1.0f}},
    {"snnl", {0.1f, 0.5f, 1.0f, 1.0f}},
    {"s2r", {0.01f, 0.5f, 1.0f, 1.0f}},
};

struct Flags {
  TrainConfig cfg;
  std::string loss = "s2r", weight_grad = "full", resume;
  float lambda = 0, alpha = 0, temperature = 0, slope = 0;
  bool overwrite = false, no_progress = false;
};

void add_flags(CLI::App& app, Flags& f) {
  TrainConfig& c = f.cfg;
  // An image count: 0 would leave nothing to train on, and leaving the flag out means all.
  const CLI::Validator at_least_one(
      [](const std::string& v) {
        int64_t n = 0;
        const bool whole = CLI::detail::lexical_cast(v, n);
        return whole && n >= 1 ? std::string()
                               : "must be a whole number >= 1 (leave it out to use every image)";
      },
      "N >= 1");
  app.add_option("--dataset", c.data.name, "fashion-mnist or mnist")
      ->capture_default_str()->check(CLI::IsMember({"fashion-mnist", "mnist"}));
  app.add_option("--data-dir", c.data.dir,
                 "folder with the dataset's files (default: Debian's location)");
  app.add_option("--model", c.model.name, "lenetpp, resnet18 or tiny")
      ->capture_default_str()->check(CLI::IsMember({"lenetpp", "resnet18", "tiny"}));
  app.add_option("--feature-dim", c.model.feature_dim, "width D of the feature layer")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--loss", f.loss, "ce, center, snnl or s2r (CE is always included)")
      ->capture_default_str()->check(CLI::IsMember({"ce", "center", "snnl", "s2r"}));
  app.add_option("--lambda", f.lambda,
                 "weight of the feature-space loss >= 0 (default per loss: center 0.03, "
                 "snnl 0.1, s2r 0.01)");
  app.add_option("--alpha", f.alpha, "center / class-variance update rate in (0,1] (0.5)");
  app.add_option("--snnl-temperature", f.temperature, "SNNL temperature T > 0 (1)");
  app.add_option("--s2r-slope", f.slope, "sigma-squared reduction sigmoid slope k > 0 (1)");
  app.add_option("--s2r-weight-grad", f.weight_grad, "full or detached")
      ->capture_default_str()->check(CLI::IsMember({"full", "detached"}));
  app.add_option("--epochs", c.epochs, "epochs to train")->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--batch-size", c.batch_size)->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--optimizer", c.optimizer.kind, "sgd, adam or adamw")
      ->capture_default_str()->check(CLI::IsMember({"sgd", "adam", "adamw"}));
  app.add_option("--lr", c.schedule.base_lr, "learning rate")->capture_default_str();
  app.add_option("--momentum", c.optimizer.momentum, "SGD momentum")->capture_default_str();
  app.add_flag("--nesterov", c.optimizer.nesterov, "Nesterov momentum (SGD)");
  app.add_option("--weight-decay", c.optimizer.weight_decay)->capture_default_str();
  app.add_option("--schedule", c.schedule.kind, "constant, step or cosine")
      ->capture_default_str()->check(CLI::IsMember({"constant", "step", "cosine"}));
  app.add_option("--warmup-steps", c.schedule.warmup_steps, "linear warmup steps")
      ->capture_default_str();
  app.add_option("--lr-step-every", c.schedule.step_every, "step schedule: steps per decay");
  app.add_option("--lr-gamma", c.schedule.gamma, "step schedule: decay factor")
      ->capture_default_str();
  app.add_option("--seed", c.seed, "one seed for initialisation and shuffling")
      ->capture_default_str();
  app.add_option("--threads", c.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("--device", c.device, "auto, cpu or cuda")->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_flag("--deterministic", c.deterministic,
               "deterministic cuDNN algorithms: bit-identical GPU runs (CPU runs always are)");
  app.add_option("--train-limit", c.data.train_limit, "use the first N >= 1 training images")
      ->check(at_least_one);
  app.add_option("--test-limit", c.data.test_limit, "use the first N >= 1 test images")
      ->check(at_least_one);
  app.add_option("--out", c.out_dir, "run folder for logs and checkpoints")
      ->capture_default_str();
  app.add_option("--resume", f.resume, "continue from a checkpoint-epochNNN.sgm");
  app.add_flag("--save-features", c.save_features,
               "write the final test features and labels as .npy");
  app.add_flag("--overwrite", f.overwrite, "replace the logs of an earlier run in --out");
  app.add_flag("--no-progress", f.no_progress, "no progress bar");
}

// Fills the per-loss defaults for what the user did not set.
void apply_loss_flags(const CLI::App& app, Flags& f) {
  const LossDefaults& d = kLossDefaults.at(f.loss);
  TrainConfig& c = f.cfg;
  c.loss.kind = f.loss;
  c.lambda = app.count("--lambda") ? f.lambda : d.lambda;
  c.loss.alpha = app.count("--alpha") ? f.alpha : d.alpha;
  c.loss.temperature = app.count("--snnl-temperature") ? f.temperature : d.temperature;
  c.loss.slope = app.count("--s2r-slope") ? f.slope : d.slope;
  c.loss.detached = f.weight_grad == "detached";
}

// The flags a resumed run may change: how long, where and how it runs, never what it trains.
const std::set<std::string> kResumable = {"--resume",      "--epochs",     "--threads",
                                          "--device",      "--data-dir",   "--out",
                                          "--overwrite",   "--no-progress", "--save-features"};

// A resumed run takes its configuration from the checkpoint. A flag that would change what
// is trained is refused rather than ignored, so that nobody believes a resumed run used it.
TrainConfig resumed_config(const CLI::App& app, const Flags& f) {
  std::string changed;
  for (const CLI::Option* opt : app.get_options()) {
    const std::string name = opt->get_name();
    if (opt->count() > 0 && name.rfind("--", 0) == 0 && !kResumable.count(name))
      changed += (changed.empty() ? "" : ", ") + name;
  }
  if (!changed.empty()) {
    throw std::runtime_error("--resume continues the checkpoint's run with its own settings, so " +
                             changed + " cannot change; drop them, or start a new run with "
                             "another --out");
  }
  sigmar::TensorFile file = sigmar::read_tensor_file(f.resume);
  if (!file.metadata.is_object() || !file.metadata.contains("config")) {
    throw std::runtime_error(f.resume + ": not a sigmar checkpoint (no run configuration in "
                             "it); pass a checkpoint-epochNNN.sgm written by sigmar-train");
  }
  TrainConfig c = sigmar::train_config_from_json(file.metadata.at("config"));
  if (app.count("--epochs")) c.epochs = f.cfg.epochs;
  if (app.count("--threads")) c.threads = f.cfg.threads;
  if (app.count("--device")) c.device = f.cfg.device;
  if (app.count("--data-dir")) c.data.dir = f.cfg.data.dir;
  if (app.count("--save-features")) c.save_features = true;
  // Default: the checkpoint's own folder ("." for a checkpoint named without a folder; an
  // empty out_dir would mean "write nothing").
  const std::filesystem::path own = std::filesystem::path(f.resume).parent_path();
  c.out_dir = app.count("--out") ? f.cfg.out_dir : own.empty() ? "." : own.string();
  return c;
}

// The files of an earlier run in DIR that a new run must not leave beside its own: the
// final epoch's features and pictures, and the checkpoints after `after_epoch`; with
// `with_logs`, the logs and configuration too (a resume keeps those and trims the logs).
std::vector<std::filesystem::path> stale_files(const std::string& dir, int64_t after_epoch,
                                               bool with_logs) {
  namespace fs = std::filesystem;
  std::vector<fs::path> found;
  for (const char* name : {"test_features.npy", "test_labels.npy", "features.png",
                           "curves.png", "metrics.csv", "classes.csv", "config.json"}) {
    const fs::path p = fs::path(dir) / name;
    const bool log = p.extension() != ".npy" && p.extension() != ".png";
    if ((with_logs || !log) && fs::exists(p)) found.push_back(p);
  }
  // checkpoint-epochNNN.sgm, NNN at least three digits.
  const std::string prefix = "checkpoint-epoch", suffix = ".sgm";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.size() < prefix.size() + 3 + suffix.size() || !n.starts_with(prefix) ||
        !n.ends_with(suffix))
      continue;
    const std::string digits = n.substr(prefix.size(), n.size() - prefix.size() - suffix.size());
    const bool number = digits.size() <= 9 && std::all_of(digits.begin(), digits.end(),
                                                          [](unsigned char ch) {
                                                            return std::isdigit(ch) != 0;
                                                          });
    if (number && std::stoll(digits) > after_epoch) found.push_back(entry.path());
  }
  return found;
}

// The highest epoch logged in DIR/metrics.csv (0 when there is none).
int64_t last_logged_epoch(const std::string& dir) {
  std::ifstream in(dir + "/metrics.csv");
  std::string line;
  int64_t last = 0;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) last = std::max<int64_t>(last, std::atoll(line.c_str()));
  return last;
}

// Keeps only the rows of a CSV log whose first column (the epoch) is at most `epoch`,
// through a temporary file renamed into place.
void truncate_log(const std::string& path, int64_t epoch) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  if (std::getline(in, line)) kept += line + "\n";
  while (std::getline(in, line))
    if (std::atoll(line.c_str()) <= epoch) kept += line + "\n";
  in.close();
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << kept;
  std::filesystem::rename(tmp, path);
}

// Refuses to mix a run's logs into another run's, unless told to replace them. A new run
// needs an empty folder (or --overwrite, which removes the earlier run's files). A resume
// into the checkpoint's own folder continues its logs; if they already go past the
// checkpoint, those later epochs would be trained again, so it needs --overwrite too, which
// drops them (rows and checkpoints). Called only once settings, data and checkpoint passed.
void prepare_out_dir(const std::string& dir, bool overwrite, const std::string& resume,
                     int64_t resume_epoch) {
  namespace fs = std::filesystem;
  if (dir.empty() || !fs::exists(dir + "/metrics.csv")) return;
  std::error_code ec;
  const bool own_folder =
      !resume.empty() && fs::equivalent(fs::absolute(resume).parent_path(), dir, ec);
  if (own_folder) {
    const int64_t logged = last_logged_epoch(dir);
    if (logged <= resume_epoch) return;
    if (!overwrite) {
      throw std::runtime_error(dir + " already logs epochs up to " + std::to_string(logged) +
                               ", past the checkpoint's epoch " + std::to_string(resume_epoch) +
                               "; pass --overwrite to drop the later epochs and train them "
                               "again, or --out another folder");
    }
    truncate_log(dir + "/metrics.csv", resume_epoch);
    truncate_log(dir + "/classes.csv", resume_epoch);
    for (const auto& p : stale_files(dir, resume_epoch, false)) fs::remove(p);
    return;
  }
  if (!overwrite) {
    throw std::runtime_error(dir + " already holds a run (metrics.csv); pass --resume " +
                             "CHECKPOINT to continue it, --overwrite to replace it, or another "
                             "--out");
  }
  for (const auto& p : stale_files(dir, 0, true)) fs::remove(p);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sigmar-train: train a network with cross-entropy plus center loss, SNNL or "
               "sigma-squared reduction"};
  Flags f;
  f.cfg.out_dir = "runs/latest";
  f.cfg.schedule.base_lr = 1e-3f;
  add_flags(app, f);
  // A flag given twice takes its last value, as in most command-line tools.
  for (CLI::Option* opt : app.get_options())
    opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "sigmar-train: error: " << e.what() << " (see --help)\n";
    return 2;
  }
  try {
    TrainConfig cfg;
    if (!f.resume.empty()) {
      cfg = resumed_config(app, f);
    } else {
      apply_loss_flags(app, f);
      cfg = f.cfg;
    }
    cfg.progress = !f.no_progress;
    // Settings, device, data and checkpoint are all checked before anything in --out changes.
    sigmar::Trainer trainer(cfg, std::cout);
    int64_t resume_epoch = 0;
    if (!f.resume.empty()) {
      trainer.load_checkpoint(f.resume);
      resume_epoch = trainer.epoch();
      if (!trainer.has_work()) {
        throw std::runtime_error(f.resume + " is the end of epoch " +
                                 std::to_string(resume_epoch) + " of a " +
                                 std::to_string(cfg.epochs) + "-epoch run: nothing is left to "
                                 "train; pass --epochs N with N > " +
                                 std::to_string(resume_epoch) + " to train further");
      }
    }
    prepare_out_dir(cfg.out_dir, f.overwrite, f.resume, resume_epoch);
    trainer.run();
  } catch (const std::exception& e) {
    std::cerr << "sigmar-train: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
