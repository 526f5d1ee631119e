// The training loop (see trainer.hpp).
#include "engine/trainer.hpp"

#include "engine/backend.hpp"
#include "engine/checkpoint.hpp"
#include "engine/npy.hpp"
#include "engine/ops.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace sigmar {

namespace fs = std::filesystem;

// ---- configuration as JSON ---------------------------------------------------------------

namespace {
// The shortest decimal that reads back as the same float, so config.json says 0.9, not
// 0.8999999761581421, and a resumed run still gets the identical float.
double decimal(float v) { return std::stod(fmt::format("{}", v)); }
}  // namespace

nlohmann::json to_json(const TrainConfig& c) {
  return {
      {"dataset", c.data.name}, {"data_dir", c.data.dir},
      {"train_limit", c.data.train_limit}, {"test_limit", c.data.test_limit},
      {"model", c.model.name}, {"feature_dim", c.model.feature_dim},
      {"loss", c.loss.kind}, {"lambda", decimal(c.lambda)}, {"alpha", decimal(c.loss.alpha)},
      {"snnl_temperature", decimal(c.loss.temperature)}, {"s2r_slope", decimal(c.loss.slope)},
      {"s2r_weight_grad", c.loss.detached ? "detached" : "full"},
      {"optimizer", c.optimizer.kind}, {"lr", decimal(c.schedule.base_lr)},
      {"momentum", decimal(c.optimizer.momentum)}, {"nesterov", c.optimizer.nesterov},
      {"weight_decay", decimal(c.optimizer.weight_decay)}, {"beta1", decimal(c.optimizer.beta1)},
      {"beta2", decimal(c.optimizer.beta2)}, {"eps", decimal(c.optimizer.eps)},
      {"schedule", c.schedule.kind}, {"warmup_steps", c.schedule.warmup_steps},
      {"step_every", c.schedule.step_every}, {"gamma", decimal(c.schedule.gamma)},
      {"min_lr", decimal(c.schedule.min_lr)},
      {"epochs", c.epochs}, {"batch_size", c.batch_size},
      {"eval_batch_size", c.eval_batch_size}, {"seed", c.seed}, {"threads", c.threads},
      {"device", c.device}, {"deterministic", c.deterministic}, {"out", c.out_dir},
      {"save_features", c.save_features},
  };
}

TrainConfig train_config_from_json(const nlohmann::json& j) {
  TrainConfig c;
  c.data.name = j.at("dataset");
  c.data.dir = j.at("data_dir");
  c.data.train_limit = j.at("train_limit");
  c.data.test_limit = j.at("test_limit");
  c.model.name = j.at("model");
  c.model.feature_dim = j.at("feature_dim");
  c.loss.kind = j.at("loss");
  c.lambda = j.at("lambda");
  c.loss.alpha = j.at("alpha");
  c.loss.temperature = j.at("snnl_temperature");
  c.loss.slope = j.at("s2r_slope");
  c.loss.detached = j.at("s2r_weight_grad") == "detached";
  c.optimizer.kind = j.at("optimizer");
  c.schedule.base_lr = j.at("lr");
  c.optimizer.momentum = j.at("momentum");
  c.optimizer.nesterov = j.at("nesterov");
  c.optimizer.weight_decay = j.at("weight_decay");
  c.optimizer.beta1 = j.at("beta1");
  c.optimizer.beta2 = j.at("beta2");
  c.optimizer.eps = j.at("eps");
  c.schedule.kind = j.at("schedule");
  c.schedule.warmup_steps = j.at("warmup_steps");
  c.schedule.step_every = j.at("step_every");
  c.schedule.gamma = j.at("gamma");
  c.schedule.min_lr = j.at("min_lr");
  c.epochs = j.at("epochs");
  c.batch_size = j.at("batch_size");
  c.eval_batch_size = j.at("eval_batch_size");
  c.seed = j.at("seed");
  c.threads = j.at("threads");
  c.device = j.at("device");
  c.deterministic = j.at("deterministic");
  c.out_dir = j.at("out");
  c.save_features = j.at("save_features");
  return c;
}

Device resolve_device(const std::string& flag) {
  std::string why;
  if (flag == "cpu") return Device::cpu;
  if (flag == "cuda") {
    if (!cuda_available(&why)) {
      throw std::runtime_error("--device cuda: " + why + "; use --device cpu or auto");
    }
    return Device::cuda;
  }
  if (flag == "auto") return cuda_available(&why) ? Device::cuda : Device::cpu;
  throw std::invalid_argument("--device must be auto, cpu or cuda, got '" + flag + "'");
}

// ---- construction ----------------------------------------------------------------------

namespace {

// Throws naming the flag, the value and what it should be, unless `ok`.
template <typename T>
void require(bool ok, const char* flag, T value, const char* should) {
  if (ok) return;
  std::ostringstream msg;
  msg << flag << " " << value << ": " << should;
  throw std::invalid_argument(msg.str());
}

bool finite_at_least(float v, float lo) { return std::isfinite(v) && v >= lo; }

}  // namespace

void validate(const TrainConfig& c) {
  require(c.batch_size >= 1, "--batch-size", c.batch_size, "must be at least 1");
  require(c.eval_batch_size >= 1, "eval_batch_size", c.eval_batch_size, "must be at least 1");
  require(c.epochs >= 0, "--epochs", c.epochs, "must be >= 0");
  require(c.threads >= 0, "--threads", c.threads, "must be >= 0 (0 uses every core)");
  require(c.data.train_limit >= 0 && c.data.test_limit >= 0, "--train-limit/--test-limit",
          std::min(c.data.train_limit, c.data.test_limit), "must be >= 1 (0 means all)");
  const Schedule& s = c.schedule;
  require(std::isfinite(s.base_lr) && s.base_lr > 0, "--lr", s.base_lr,
          "must be a finite number > 0 (1e-3 suits Adam, 0.01-0.1 SGD)");
  require(s.warmup_steps >= 0, "--warmup-steps", s.warmup_steps, "must be >= 0");
  require(std::isfinite(s.gamma) && s.gamma > 0 && s.gamma <= 1, "--lr-gamma", s.gamma,
          "must lie in (0, 1]");
  require(s.kind != "step" || s.step_every >= 1, "--lr-step-every", s.step_every,
          "must be at least 1 with --schedule step (optimizer steps between decays)");
  require(finite_at_least(s.min_lr, 0), "min_lr", s.min_lr, "must be >= 0");
  const OptimizerConfig& o = c.optimizer;
  require(finite_at_least(o.momentum, 0) && o.momentum < 1, "--momentum", o.momentum,
          "must lie in [0, 1) (0.9 is usual; 0 is plain SGD)");
  require(finite_at_least(o.weight_decay, 0), "--weight-decay", o.weight_decay,
          "must be a finite number >= 0");
  require(finite_at_least(o.beta1, 0) && o.beta1 < 1, "beta1", o.beta1, "must lie in [0, 1)");
  require(finite_at_least(o.beta2, 0) && o.beta2 < 1, "beta2", o.beta2, "must lie in [0, 1)");
  require(std::isfinite(o.eps) && o.eps > 0, "eps", o.eps, "must be a finite number > 0");
  require(finite_at_least(c.lambda, 0), "--lambda", c.lambda,
          "must be a finite number >= 0 (0 trains with cross-entropy alone)");
  const AuxLossConfig& l = c.loss;
  require(std::isfinite(l.alpha) && l.alpha > 0 && l.alpha <= 1, "--alpha", l.alpha,
          "must lie in (0, 1] (0.5 is the center-loss paper's rate)");
  require(std::isfinite(l.temperature) && l.temperature > 0, "--snnl-temperature",
          l.temperature, "must be a finite number > 0");
  require(std::isfinite(l.slope) && l.slope > 0, "--s2r-slope", l.slope,
          "must be a finite number > 0");
}

Trainer::Trainer(TrainConfig cfg, std::ostream& log) : cfg_(std::move(cfg)), log_(log) {
  validate(cfg_);
  set_cpu_threads(cfg_.threads);
  set_deterministic(cfg_.deterministic);
  device_ = resolve_device(cfg_.device);
  data_ = load_dataset(cfg_.data, device_);
  cfg_.model.in_channels = data_.channels;
  cfg_.model.image_size = data_.image_size;
  cfg_.model.num_classes = data_.num_classes;
  rng_ = Rng(cfg_.seed);
  model_ = make_model(cfg_.model, rng_, device_);
  const int64_t feature_dim = cfg_.model.name == "resnet18" ? 512 : cfg_.model.feature_dim;
  aux_ = make_aux_loss(cfg_.loss, data_.num_classes, feature_dim, device_);
  optimizer_ = make_optimizer(cfg_.optimizer, model_->parameters());
  cfg_.schedule.min_lr = std::min(cfg_.schedule.min_lr, cfg_.schedule.base_lr);
}

Trainer::~Trainer() = default;

int64_t Trainer::batches_per_epoch() const {
  return (data_.train.size() + cfg_.batch_size - 1) / cfg_.batch_size;
}

int64_t Trainer::total_steps() const { return batches_per_epoch() * cfg_.epochs; }

void Trainer::start_epoch_if_needed() {
  if (!order_.empty()) return;
  // The permutation is a function of the generator's state at the epoch's start, so a
  // checkpoint taken mid-epoch rebuilds exactly the same order.
  if (next_batch_ == 0) {
    epoch_rng_state_ = rng_.state();
    order_ = rng_.permutation(data_.train.size());
  } else {
    Rng replay(epoch_rng_state_);
    order_ = replay.permutation(data_.train.size());
  }
}

// ---- one step ----------------------------------------------------------------------------

void Trainer::step(StepStats& stats) {
  start_epoch_if_needed();
  const int64_t begin = next_batch_ * cfg_.batch_size;
  const int64_t count = std::min<int64_t>(cfg_.batch_size, data_.train.size() - begin);
  Batch batch = make_batch(data_, data_.train, order_.data() + begin, count);

  ModelOutput out = model_->forward(batch.images, true);
  Tensor ce = ops::softmax_cross_entropy(out.logits, batch.labels);
  Tensor loss = ce, aux;
  if (aux_) {
    aux = aux_->forward(out.features, batch.labels);
    loss = ops::add_scaled(ce, aux, cfg_.lambda);
  }
  const float loss_value = ops::item(loss);
  const float aux_value = aux.defined() ? ops::item(aux) : 0.0f;
  if (!std::isfinite(loss_value) || !std::isfinite(aux_value)) {
    const std::string which = !std::isfinite(aux_value) ? aux_->name() + " loss"
                                                        : "cross-entropy";
    throw std::runtime_error(fmt::format(
        "training stopped: the {} is {} at epoch {}, step {} (global step {}); lower --lr or "
        "--lambda", which, !std::isfinite(aux_value) ? aux_value : loss_value, epoch_ + 1,
        next_batch_ + 1, global_step() + 1));
  }
  optimizer_->zero_grad();
  loss.backward();
  optimizer_->step(cfg_.schedule.lr_at(global_step(), total_steps()));
  if (aux_) {
    NoGradGuard no_grad;
    aux_->update(out.features, batch.labels);  // SPEC 2.2: after the step, old-state loss
  }
  stats.loss_sum += loss_value;
  stats.aux_sum += aux_value;
  stats.steps += 1;
  stats.images += count;
  if (++next_batch_ == batches_per_epoch()) {
    ++epoch_;
    next_batch_ = 0;
    order_.clear();
  }
}

void Trainer::train_steps(int64_t n) {
  StepStats stats;
  for (int64_t i = 0; i < n; ++i) step(stats);
}

// ---- evaluation --------------------------------------------------------------------------

EpochResult Trainer::evaluate() {
  NoGradGuard no_grad;
  const Split& test = data_.test;
  const int64_t N = test.size();
  const int64_t D = cfg_.model.name == "resnet18" ? 512 : cfg_.model.feature_dim;
  const int64_t C = data_.num_classes;
  std::vector<float> features(N * D), logits(N * C);
  std::vector<int32_t> idx(N);
  for (int64_t i = 0; i < N; ++i) idx[i] = static_cast<int32_t>(i);
  for (int64_t begin = 0; begin < N; begin += cfg_.eval_batch_size) {
    const int64_t count = std::min(cfg_.eval_batch_size, N - begin);
    Batch b = make_batch(data_, test, idx.data() + begin, count);
    ModelOutput out = model_->forward(b.images, false);
    std::vector<float> f = out.features.to_vector(), l = out.logits.to_vector();
    std::copy(f.begin(), f.end(), features.begin() + begin * D);
    std::copy(l.begin(), l.end(), logits.begin() + begin * C);
  }
  EpochResult r;
  r.epoch = epoch_;
  r.test = compute_metrics(features, D, logits, C, test.labels);
  last_features_ = std::move(features);
  return r;
}

// ---- the whole run -----------------------------------------------------------------------

namespace {

bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

void progress_bar(int64_t epoch, int64_t epochs, int64_t done, int64_t total, double loss,
                  double img_per_s) {
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * done / std::max<int64_t>(total, 1));
  std::string bar(filled, '=');
  if (filled < kWidth) bar += '>' + std::string(kWidth - filled - 1, ' ');
  std::cerr << fmt::format("\repoch {}/{} [{}] {}/{} loss {:.4f} {:.0f} img/s ", epoch,
                           epochs, bar, done, total, loss, img_per_s)
            << std::flush;
}

}  // namespace

void Trainer::print_header() {
  log_ << "sigmar-train\n";
  log_ << fmt::format("  {:<18}{}\n", "backend", backend_for(device_).describe());
  std::string why;
  if (cfg_.device == "auto" && device_ == Device::cpu && !cuda_available(&why)) {
    log_ << fmt::format("  {:<18}{}\n", "no GPU because", why);
  }
  const nlohmann::json settings = to_json(cfg_);  // must outlive the loop over its items
  for (auto& [key, value] : settings.items()) {
    log_ << fmt::format("  {:<18}{}\n", key, value.dump());
  }
  log_ << fmt::format("  {:<18}{} train / {} test images of {}x{}x{}, {} classes\n", "data",
                      data_.train.size(), data_.test.size(), data_.channels, data_.image_size,
                      data_.image_size, data_.num_classes);
  log_ << fmt::format("  {:<18}{} ({} parameters)\n", "model", model_->name(),
                      model_->parameter_count());
  if (!resumed_from_.empty()) {
    log_ << fmt::format("  {:<18}{} (after epoch {}, batch {})\n", "resumed from",
                        resumed_from_, epoch_, next_batch_);
  }
  log_ << std::flush;
}

EpochResult Trainer::run() {
  if (!cfg_.out_dir.empty()) {
    fs::create_directories(cfg_.out_dir);
    std::ofstream(cfg_.out_dir + "/config.json") << to_json(cfg_).dump(2) << "\n";
  }
  print_header();
  const bool bar = cfg_.progress && stderr_is_terminal();
  EpochResult result;
  while (epoch_ < cfg_.epochs) {
    StepStats stats;
    const int64_t nb = batches_per_epoch();
    const int64_t this_epoch = epoch_ + 1;
    auto t0 = std::chrono::steady_clock::now();
    auto seconds = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    while (epoch_ + 1 == this_epoch) {
      step(stats);
      if (bar && (stats.steps % 5 == 0 || epoch_ + 1 != this_epoch)) {
        progress_bar(this_epoch, cfg_.epochs, next_batch_ ? next_batch_ : nb, nb,
                     stats.loss_sum / stats.steps, stats.images / seconds());
      }
    }
    const double train_seconds = seconds();
    if (bar) std::cerr << "\n";
    result = evaluate();
    result.train_loss = stats.loss_sum / std::max<int64_t>(stats.steps, 1);
    result.aux_loss = stats.aux_sum / std::max<int64_t>(stats.steps, 1);
    result.img_per_s = stats.images / train_seconds;
    log_ << fmt::format(
        "epoch {:>3}  train_loss {:.4f}  aux_loss {:.4f}  test_acc {:.4f}  intra {:.4g}  "
        "intra_ratio {:.4g}  {:.0f} img/s  ({:.1f} s)\n",
        result.epoch, result.train_loss, result.aux_loss, result.test.accuracy,
        result.test.intra, result.test.intra_ratio, result.img_per_s, train_seconds)
         << std::flush;
    write_epoch_files(result, last_features_);
  }
  return result;
}

void Trainer::write_epoch_files(const EpochResult& r, const std::vector<float>& features) {
  if (cfg_.out_dir.empty()) return;
  const std::string dir = cfg_.out_dir;
  const std::string metrics = dir + "/metrics.csv";
  const bool fresh = !fs::exists(metrics);
  std::ofstream m(metrics, std::ios::app);
  if (fresh) m << "epoch,train_loss,test_acc,img_per_s,aux_loss,intra,inter,intra_ratio\n";
  m << fmt::format("{},{:.6f},{:.4f},{:.1f},{:.6f},{:.6g},{:.6g},{:.6g}\n", r.epoch,
                   r.train_loss, r.test.accuracy, r.img_per_s, r.aux_loss, r.test.intra,
                   r.test.inter, r.test.intra_ratio);
  const std::string classes = dir + "/classes.csv";
  const bool fresh_classes = !fs::exists(classes);
  std::ofstream c(classes, std::ios::app);
  if (fresh_classes) c << "epoch,class,count,variance\n";
  for (size_t j = 0; j < r.test.count.size(); ++j) {
    c << fmt::format("{},{},{},{:.6g}\n", r.epoch, j, r.test.count[j], r.test.variance[j]);
  }
  save_checkpoint(fmt::format("{}/checkpoint-epoch{:03d}.sgm", dir, r.epoch));
  if (cfg_.save_features && r.epoch == cfg_.epochs) {
    const int64_t N = data_.test.size();
    const int64_t D = static_cast<int64_t>(features.size()) / std::max<int64_t>(N, 1);
    write_npy(dir + "/test_features.npy", npy_f32({N, D}, features));
    write_npy(dir + "/test_labels.npy", npy_i32({N}, data_.test.labels));
  }
}

// ---- checkpoints -------------------------------------------------------------------------

std::vector<NamedTensor> Trainer::checkpoint_tensors() {
  std::vector<NamedTensor> all;
  for (auto& p : model_->parameters()) all.push_back({"param." + p.name, p.tensor});
  for (auto& b : model_->buffers()) all.push_back({"buffer." + b.name, b.tensor});
  for (auto& s : optimizer_->state()) all.push_back({"optim." + s.name, s.tensor});
  if (aux_) {
    for (auto& s : aux_->state()) all.push_back({"loss." + s.name, s.tensor});
  }
  return all;
}

void Trainer::save_checkpoint(const std::string& path) {
  std::vector<NamedBuffer> buffers;
  for (auto& t : checkpoint_tensors()) buffers.push_back(to_buffer(t.name, t.tensor));
  nlohmann::json meta = {
      {"format", "sigmar-checkpoint-1"},
      {"config", to_json(cfg_)},
      {"epoch", epoch_},
      {"next_batch", next_batch_},
      {"optimizer_steps", optimizer_->step_count()},
      // 64-bit generator states as strings: JSON numbers lose bits past 2^53 in many readers.
      {"rng_state", std::to_string(rng_.state())},
      {"epoch_rng_state", std::to_string(epoch_rng_state_)},
  };
  write_tensor_file(path, buffers, meta);
}

void Trainer::load_checkpoint(const std::string& path) {
  TensorFile file = read_tensor_file(path);
  const nlohmann::json& meta = file.metadata;
  if (!meta.is_object() || meta.value("format", "") != "sigmar-checkpoint-1") {
    throw std::runtime_error(path + ": not a sigmar checkpoint (no sigmar-checkpoint-1 "
                             "metadata); pass a checkpoint-epochNNN.sgm written by sigmar-train");
  }
  try {
    for (auto& t : checkpoint_tensors()) load_into(file, t.name, t.tensor);
    epoch_ = meta.at("epoch");
    next_batch_ = meta.at("next_batch");
    optimizer_->set_step_count(meta.at("optimizer_steps"));
    rng_.set_state(std::stoull(meta.at("rng_state").get<std::string>()));
    epoch_rng_state_ = std::stoull(meta.at("epoch_rng_state").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": checkpoint metadata is incomplete (" + e.what() + ")");
  }
  order_.clear();  // rebuilt from epoch_rng_state_ at the next step
  resumed_from_ = path;
}

}  // namespace sigmar
