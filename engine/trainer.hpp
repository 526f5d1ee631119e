// The training loop behind sigmar-train: data, model, loss, optimizer, schedule, metrics,
// logs and checkpoints of one run. The binary only parses flags into a TrainConfig; tests
// drive the same Trainer step by step.
#pragma once

#include "engine/data.hpp"
#include "engine/metrics.hpp"
#include "engine/optim.hpp"
#include "losses/aux_loss.hpp"
#include "models/models.hpp"

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <memory>
#include <string>

namespace sigmar {

struct TrainConfig {
  DataConfig data;
  ModelConfig model;
  AuxLossConfig loss;
  float lambda = 0.0f;  // weight of the auxiliary loss
  OptimizerConfig optimizer;
  Schedule schedule;
  int64_t epochs = 3;
  int64_t batch_size = 128;
  int64_t eval_batch_size = 1000;
  uint64_t seed = 1;
  int threads = 0;          // 0: leave OpenMP's default
  std::string device = "auto";
  bool deterministic = false;
  std::string out_dir;      // empty: no files written
  bool save_features = false;
  bool progress = true;     // a progress bar when stderr is a terminal
};

// Throws std::invalid_argument naming the flag, its value and the range it must lie in, for
// the first setting that is out of range (the Trainer calls it before anything else).
void validate(const TrainConfig& c);

nlohmann::json to_json(const TrainConfig& c);
TrainConfig train_config_from_json(const nlohmann::json& j);

struct EpochResult {
  int64_t epoch = 0;
  double train_loss = 0, aux_loss = 0, img_per_s = 0;
  FeatureMetrics test;
};

class Trainer {
 public:
  // Loads the data and builds everything from cfg.seed; `log` receives the human-readable
  // lines (configuration table, one line per epoch).
  Trainer(TrainConfig cfg, std::ostream& log);
  ~Trainer();

  // Trains from the current position to cfg.epochs, evaluating, logging and checkpointing
  // after each epoch. Returns the last epoch's result.
  EpochResult run();
  // Trains `n` more steps (crossing epoch boundaries without evaluating); for tests.
  void train_steps(int64_t n);
  EpochResult evaluate();

  void save_checkpoint(const std::string& path);
  // Restores everything SPEC 7 lists. The checkpoint's configuration must match this run's.
  void load_checkpoint(const std::string& path);

  const TrainConfig& config() const { return cfg_; }
  Model& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }
  AuxLoss* aux_loss() { return aux_.get(); }
  Rng& rng() { return rng_; }
  int64_t epoch() const { return epoch_; }            // epochs completed
  int64_t next_batch() const { return next_batch_; }  // position inside the current epoch
  bool has_work() const { return epoch_ < cfg_.epochs; }  // run() would train something
  int64_t global_step() const { return optimizer_->step_count(); }
  Device device() const { return device_; }
  const DataSet& data() const { return data_; }
  // This epoch's order of training images (empty until its first step).
  const std::vector<int32_t>& epoch_order() const { return order_; }
  // Every tensor a checkpoint holds, by name.
  std::vector<NamedTensor> checkpoint_tensors();

 private:
  struct StepStats {
    double loss_sum = 0, aux_sum = 0;
    int64_t steps = 0, images = 0;
  };

  TrainConfig cfg_;
  std::ostream& log_;
  Device device_;
  DataSet data_;
  Rng rng_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<AuxLoss> aux_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t epoch_ = 0, next_batch_ = 0;
  std::string resumed_from_;  // the checkpoint loaded, for the settings table
  uint64_t epoch_rng_state_ = 0;     // the generator's state before this epoch's shuffle
  std::vector<int32_t> order_;       // this epoch's permutation of the training set
  std::vector<float> last_features_; // test features of the last evaluate()

  int64_t batches_per_epoch() const;
  int64_t total_steps() const;
  void start_epoch_if_needed();
  // One optimizer step on batch `next_batch_` of the current epoch.
  void step(StepStats& stats);
  void print_header();
  void write_epoch_files(const EpochResult& r, const std::vector<float>& features);
};

// Picks the device for --device auto|cpu|cuda (auto: the GPU when one answers).
Device resolve_device(const std::string& flag);

}  // namespace sigmar
