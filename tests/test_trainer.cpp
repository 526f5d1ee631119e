// The trainer end to end: bit-identical resume (CASES 15), loss state through the public API
// (CASES 6, 7), NaN stops, and the sigmar-train binary on real Fashion-MNIST: accuracy after
// one short epoch, resume equal to an uninterrupted run, and one clear error per bad input.
#include "engine/checkpoint.hpp"
#include "engine/trainer.hpp"
#include "tests/test_util.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace sigmar;
namespace fs = std::filesystem;

namespace {

using test_util::ScratchDir;

// A tiny net with batch norm, center or σ²R loss, Adam and shuffled real data.
TrainConfig tiny_config(const std::string& loss = "center") {
  TrainConfig c;
  c.data.train_limit = 96;
  c.data.test_limit = 50;
  c.model.name = "tiny";
  c.model.feature_dim = 3;
  c.loss.kind = loss;
  c.lambda = 0.1f;
  c.optimizer.kind = "adam";
  c.schedule.base_lr = 1e-2f;
  c.batch_size = 8;
  c.epochs = 2;
  c.seed = 7;
  c.device = "cpu";
  c.progress = false;
  return c;
}

struct Snapshot {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> tensors;
  int64_t steps, epoch, next_batch;
  uint64_t rng;
};

Snapshot snapshot(Trainer& t) {
  Snapshot s{{}, t.global_step(), t.epoch(), t.next_batch(), t.rng().state()};
  for (auto& nt : t.checkpoint_tensors()) s.tensors.push_back({nt.name, to_buffer(nt.name,
                                                               nt.tensor).bytes});
  return s;
}

// Names of the items that differ bit for bit (empty: identical).
std::vector<std::string> differences(const Snapshot& a, const Snapshot& b) {
  std::vector<std::string> out;
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    if (a.tensors[i].second != b.tensors[i].second) out.push_back(a.tensors[i].first);
  }
  if (a.steps != b.steps) out.push_back("optimizer step count");
  if (a.epoch != b.epoch || a.next_batch != b.next_batch) out.push_back("data position");
  if (a.rng != b.rng) out.push_back("rng");
  return out;
}

// Runs sigmar-train with `args`, from the folder `cwd` when one is given.
std::string run(const std::string& args, int* exit_code, const fs::path& cwd = {}) {
  std::string cmd = std::string(SIGMAR_TRAIN_BIN) + " " + args + " 2>&1";
  if (!cwd.empty()) cmd = "cd '" + cwd.string() + "' && " + cmd;
  FILE* pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  int status = pclose(pipe);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::string last_line(const fs::path& file) {
  std::ifstream in(file);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

// A checkpoint written after `steps` steps of tiny_config(), and the state of an uninterrupted
// run one step further: what one step after loading the checkpoint must reproduce.
struct ResumePoint {
  std::string ckpt;
  Snapshot want;
};

ResumePoint resume_point(const fs::path& dir, int64_t steps, std::ostream& log) {
  Trainer straight(tiny_config(), log);
  straight.train_steps(steps + 1);
  Trainer first(tiny_config(), log);
  first.train_steps(steps);
  const std::string ckpt = (dir / ("step" + std::to_string(steps) + ".sgm")).string();
  first.save_checkpoint(ckpt);
  return {ckpt, snapshot(straight)};
}

}  // namespace

TEST_CASE("trainer: resume after 2 steps equals 3 uninterrupted steps bit for bit (CASES 15)") {
  std::ostringstream log;
  const ScratchDir scratch("trainer-resume15");
  const fs::path& dir = scratch.dir;
  // The batch size puts step 3 inside the first epoch: a mid-epoch data position.
  const auto [ckpt, want] = resume_point(dir, 2, log);

  Trainer resumed(tiny_config(), log);
  resumed.load_checkpoint(ckpt);
  resumed.train_steps(1);
  CHECK(differences(want, snapshot(resumed)).empty());

  // Every item matters: restoring all but one of them must change the result. The items are
  // the checkpoint's tensors (parameters, Adam moments, BN running stats, centers) plus the
  // step count, RNG and data position, which live in its metadata.
  const std::vector<std::string> kinds = {"param.", "optim.adam_m.", "optim.adam_v.",
                                          "buffer.", "loss.centers"};
  for (const std::string& kind : kinds) {
    Trainer partial(tiny_config(), log);
    std::vector<NamedTensor> keep = partial.checkpoint_tensors();
    partial.load_checkpoint(ckpt);
    // Put the fresh (never trained) values of this kind back, as if the file lacked them.
    Trainer fresh(tiny_config(), log);
    auto fresh_tensors = fresh.checkpoint_tensors();
    for (size_t i = 0; i < keep.size(); ++i) {
      if (keep[i].name.rfind(kind, 0) == 0) keep[i].tensor.copy_from(fresh_tensors[i].tensor);
    }
    partial.train_steps(1);
    CAPTURE(kind);
    CHECK_FALSE(differences(want, snapshot(partial)).empty());
  }
}

TEST_CASE("trainer: dropping the step count or the RNG state breaks the resume") {
  std::ostringstream log;
  const ScratchDir scratch("trainer-resume15meta");
  const fs::path& dir = scratch.dir;
  // Step 13 crosses into the second epoch (12 batches per epoch).
  const auto [ckpt, want] = resume_point(dir, 12, log);

  Trainer ok(tiny_config(), log);
  ok.load_checkpoint(ckpt);
  ok.train_steps(1);
  CHECK(differences(want, snapshot(ok)).empty());

  Trainer no_steps(tiny_config(), log);
  no_steps.load_checkpoint(ckpt);
  no_steps.optimizer().set_step_count(0);
  no_steps.train_steps(1);
  CHECK_FALSE(differences(want, snapshot(no_steps)).empty());

  Trainer no_rng(tiny_config(), log);
  no_rng.load_checkpoint(ckpt);
  no_rng.rng().set_state(tiny_config().seed);
  no_rng.train_steps(1);
  CHECK_FALSE(differences(want, snapshot(no_rng)).empty());
}

TEST_CASE("trainer: a checkpoint without its data position resumes elsewhere (CASES 15)") {
  // Mid-epoch (step 5 of 12), where both halves of the position matter: the batch index and
  // the generator state the epoch's shuffle was drawn from.
  std::ostringstream log;
  const ScratchDir scratch("trainer-resume15position");
  const fs::path& dir = scratch.dir;
  const auto [ckpt, want] = resume_point(dir, 5, log);

  // The same file with one metadata field reset to what a fresh run starts from.
  const TensorFile file = read_tensor_file(ckpt);
  const auto without = [&](const std::string& field, const nlohmann::json& fresh) {
    nlohmann::json meta = file.metadata;
    meta[field] = fresh;
    const std::string path = (dir / ("no-" + field + ".sgm")).string();
    write_tensor_file(path, file.buffers, meta);
    Trainer t(tiny_config(), log);
    t.load_checkpoint(path);
    t.train_steps(1);
    return differences(want, snapshot(t));
  };
  CHECK(without("next_batch", file.metadata.at("next_batch")).empty());  // the control
  CHECK_FALSE(without("next_batch", 0).empty());
  CHECK_FALSE(without("epoch_rng_state", std::to_string(tiny_config().seed)).empty());
}

TEST_CASE("trainer: center and class-variance state move only for classes in the batch") {
  for (const std::string loss : {"center", "s2r"}) {
    CAPTURE(loss);
    std::ostringstream log;
    TrainConfig cfg = tiny_config(loss);
    cfg.batch_size = 4;  // at most 4 of the 10 classes are in the first batch
    Trainer t(cfg, log);
    t.train_steps(1);
    std::vector<bool> present(10, false);
    for (int i = 0; i < 4; ++i) present[t.data().train.labels[t.epoch_order()[i]]] = true;
    std::vector<float> centers;
    for (auto& s : t.aux_loss()->state()) {
      if (s.name == "centers") centers = s.tensor.to_vector();
    }
    REQUIRE(centers.size() == 30);
    int moved = 0;
    for (int j = 0; j < 10; ++j) {
      bool changed = false;
      for (int d = 0; d < 3; ++d) changed |= centers[j * 3 + d] != 0.0f;
      CHECK(changed == present[j]);  // CASES 7: absent classes keep their center exactly
      moved += changed;
    }
    CHECK(moved >= 1);
  }
}

TEST_CASE("trainer: the center update ignores the optimizer's lr, lambda and weight decay") {
  // CASES 6: the centers follow the features of the forward pass, never the optimizer.
  std::vector<std::vector<float>> results;
  for (auto [lr, lambda, wd] : {std::tuple{1e-2f, 0.1f, 0.0f}, std::tuple{0.5f, 3.0f, 0.1f}}) {
    std::ostringstream log;
    TrainConfig cfg = tiny_config("center");
    cfg.schedule.base_lr = lr;
    cfg.lambda = lambda;
    cfg.optimizer.weight_decay = wd;
    Trainer t(cfg, log);
    t.train_steps(1);
    results.push_back(t.aux_loss()->state()[0].tensor.to_vector());
  }
  CHECK(results[0] == results[1]);
}

TEST_CASE("trainer: a loss that becomes NaN or inf stops training with a message") {
  std::ostringstream log;
  TrainConfig cfg = tiny_config("center");
  cfg.schedule.base_lr = 1e30f;  // the first step throws the weights to ~1e30
  Trainer t(cfg, log);
  std::string message;
  try {
    t.train_steps(10);
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  CAPTURE(message);
  CHECK(message.find("training stopped") != std::string::npos);
  CHECK(message.find("step") != std::string::npos);
  CHECK((message.find("cross-entropy") != std::string::npos ||
         message.find("center loss") != std::string::npos));
}

TEST_CASE("sigmar-train: one epoch of LeNet++ on 5,000 real images reaches 60% test accuracy") {
  const ScratchDir scratch("trainer-e2e");
  const fs::path& dir = scratch.dir;
  int code = 0;
  std::string out = run("--loss ce --feature-dim 32 --optimizer adam --lr 1e-3 --batch-size 128 "
                        "--epochs 1 --train-limit 5000 --seed 1 --no-progress --out " +
                            dir.string(), &code);
  REQUIRE_MESSAGE(code == 0, out);
  std::string line = last_line(dir / "metrics.csv");
  MESSAGE("metrics.csv: " << line);
  float acc = 0;
  REQUIRE(std::sscanf(line.c_str(), "1,%*f,%f", &acc) == 1);
  CHECK(acc >= 0.60f);
  CHECK(fs::exists(dir / "config.json"));
  CHECK(fs::exists(dir / "classes.csv"));
  CHECK(fs::exists(dir / "checkpoint-epoch001.sgm"));
}

TEST_CASE("sigmar-train: resuming from epoch 1 reproduces epoch 2 to the last digit") {
  const std::string common = "--loss s2r --feature-dim 8 --train-limit 1000 "
                             "--test-limit 500 --seed 3 --no-progress ";
  const ScratchDir scratch_a("trainer-resume-a"), scratch_b("trainer-resume-b");
  const fs::path &a = scratch_a.dir, &b = scratch_b.dir;
  int code = 0;
  std::string out = run(common + "--epochs 2 --out " + a.string(), &code);
  REQUIRE_MESSAGE(code == 0, out);
  out = run(common + "--epochs 1 --out " + b.string(), &code);
  REQUIRE_MESSAGE(code == 0, out);
  out = run("--resume " + (b / "checkpoint-epoch001.sgm").string() + " --epochs 2", &code);
  REQUIRE_MESSAGE(code == 0, out);
  // Everything but the throughput column (wall-clock) must match.
  auto strip_speed = [](std::string line) {
    size_t p1 = line.find(',', line.find(',', line.find(',') + 1) + 1);
    size_t p2 = line.find(',', p1 + 1);
    return line.erase(p1, p2 - p1);
  };
  std::string want = last_line(a / "metrics.csv"), got = last_line(b / "metrics.csv");
  CHECK(want.rfind("2,", 0) == 0);
  CHECK(strip_speed(got) == strip_speed(want));
}

TEST_CASE("sigmar-train: bad input gives one clear error line and a non-zero exit") {
  const ScratchDir scratch("trainer-bad");
  const fs::path& dir = scratch.dir;
  struct Case {
    std::string args, expect;
  };
  // A corrupt IDX set: a real-looking folder whose training images are cut short.
  const fs::path corrupt = dir / "corrupt";
  fs::create_directories(corrupt);
  for (const char* name : {"train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                           "t10k-labels-idx1-ubyte"}) {
    std::ofstream(corrupt / name) << "";
  }
  {
    std::ofstream f(corrupt / "train-images-idx3-ubyte", std::ios::binary);
    const unsigned char header[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2};
    f.write(reinterpret_cast<const char*>(header), sizeof header);
  }
  std::ofstream(dir / "broken.sgm") << "this is not a checkpoint";
  const std::vector<Case> cases = {
      {"--data-dir " + (dir / "nowhere").string(), "data directory not found"},
      {"--data-dir " + corrupt.string(), "train-images-idx3-ubyte"},
      {"--loss triplet", "--loss"},
      {"--optimizer rmsprop", "--optimizer"},
      {"--epochs -1", "--epochs"},
      {"--resume " + (dir / "broken.sgm").string(), "broken.sgm"},
      {"--resume " + (dir / "missing.sgm").string(), "missing.sgm"},
      {"--lambda -1", "--lambda -1: must be a finite number >= 0"},
      {"--optimizer sgd --momentum 5", "--momentum 5: must lie in [0, 1)"},
      {"--schedule step", "--lr-step-every 0: must be at least 1"},
      {"--train-limit 0", "leave it out to use every image"},
      {"--threads -3", "--threads -3"},
  };
  for (const Case& c : cases) {
    int code = 0;
    std::string out = run(c.args + " --out " + (dir / "run").string() + " --overwrite", &code);
    CAPTURE(c.args);
    CAPTURE(out);
    CHECK(code != 0);
    CHECK(out.find(c.expect) != std::string::npos);
    CHECK(out.find("error") != std::string::npos);
    // One line, not a stack of output.
    CHECK(std::count(out.begin(), out.end(), '\n') <= 1);
  }

  // --overwrite replaces an earlier run only once the new one has passed every check.
  const fs::path earlier = dir / "earlier";
  fs::create_directories(earlier);
  std::ofstream(earlier / "metrics.csv") << "epoch,train_loss\n1,0.5\n";
  for (const std::string& bad :
       std::vector<std::string>{"--lambda -1", "--data-dir " + (dir / "nowhere").string()}) {
    int code = 0;
    run(bad + " --out " + earlier.string() + " --overwrite", &code);
    CAPTURE(bad);
    CHECK(code != 0);
    std::ifstream kept(earlier / "metrics.csv");
    std::string first, second;
    std::getline(kept, first);
    std::getline(kept, second);
    CHECK(second == "1,0.5");
  }
}

TEST_CASE("sigmar-train: run folders are never mixed, and a resume refuses changed settings") {
  const std::string tiny = "--model tiny --feature-dim 3 --loss center --train-limit 96 "
                           "--test-limit 50 --batch-size 16 --no-progress ";
  const ScratchDir scratch("trainer-folders");
  const fs::path a = scratch.dir / "a", b = scratch.dir / "b";
  int code = 0;
  std::string out = run(tiny + "--epochs 2 --save-features --out " + a.string(), &code);
  REQUIRE_MESSAGE(code == 0, out);
  out = run(tiny + "--epochs 1 --out " + b.string(), &code);
  REQUIRE_MESSAGE(code == 0, out);
  const std::string a_metrics = last_line(a / "metrics.csv");
  const std::string b1 = (b / "checkpoint-epoch001.sgm").string();

  // A flag that would change what is trained is refused by name, not silently ignored.
  out = run("--resume " + b1 + " --epochs 2 --loss ce --lr 0.5", &code);
  CHECK(code != 0);
  CHECK_MESSAGE(out.find("--loss, --lr cannot change") != std::string::npos, out);
  CHECK(!fs::exists(b / "checkpoint-epoch002.sgm"));

  // Nothing left to train is an error that says how to train further, and writes nothing.
  out = run("--resume " + b1, &code);
  CHECK(code != 0);
  CHECK_MESSAGE(out.find("pass --epochs N with N > 1") != std::string::npos, out);

  // A checkpoint named without a folder resumes into the folder it is in (the current one).
  out = run("--resume checkpoint-epoch001.sgm --epochs 2", &code, b);
  REQUIRE_MESSAGE(code == 0, out);
  CHECK(fs::exists(b / "checkpoint-epoch002.sgm"));
  CHECK(last_line(b / "metrics.csv").rfind("2,", 0) == 0);

  // A resume into another run's folder is refused; that run's log is untouched.
  out = run("--resume " + b1 + " --epochs 2 --out " + a.string(), &code);
  CHECK(code != 0);
  CHECK_MESSAGE(out.find("already holds a run") != std::string::npos, out);
  CHECK(last_line(a / "metrics.csv") == a_metrics);

  // Resuming A from its epoch 1 would train epoch 2 again: only with --overwrite, which
  // drops the later rows and checkpoints first, so each epoch is logged once.
  const std::string a1 = (a / "checkpoint-epoch001.sgm").string();
  out = run("--resume " + a1, &code);
  CHECK(code != 0);
  CHECK_MESSAGE(out.find("already logs epochs up to 2") != std::string::npos, out);
  CHECK(fs::exists(a / "checkpoint-epoch002.sgm"));
  out = run("--resume " + a1 + " --epochs 2 --overwrite", &code);
  REQUIRE_MESSAGE(code == 0, out);
  std::ifstream log(a / "metrics.csv");
  std::string line;
  int rows = 0;
  while (std::getline(log, line)) rows += line.rfind("2,", 0) == 0;
  CHECK(rows == 1);

  // --overwrite with a new run removes every file of the old one: no stale checkpoint of
  // epoch 2 or features of another model are left beside the new run's epoch 1.
  out = run(tiny + "--epochs 1 --loss ce --out " + a.string() + " --overwrite", &code);
  REQUIRE_MESSAGE(code == 0, out);
  CHECK(fs::exists(a / "checkpoint-epoch001.sgm"));
  CHECK(!fs::exists(a / "checkpoint-epoch002.sgm"));
  CHECK(!fs::exists(a / "test_features.npy"));
  CHECK(last_line(a / "metrics.csv").rfind("1,", 0) == 0);
  std::ifstream config(a / "config.json");
  const std::string text((std::istreambuf_iterator<char>(config)), {});
  CHECK(text.find("\"loss\": \"ce\"") != std::string::npos);
}
