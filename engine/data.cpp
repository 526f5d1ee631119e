// Loading datasets and forming batches (see data.hpp).
#include "engine/data.hpp"

#include "engine/backend.hpp"
#include "engine/idx.hpp"

#include <cmath>
#include <filesystem>
#include <stdexcept>

namespace sigmar {

std::string default_data_dir(const std::string& name) {
  if (name == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (name == "mnist") return "/usr/share/datasets/mnist";
  if (name == "cifar10") return "/usr/share/datasets/cifar10";
  throw std::invalid_argument("unknown dataset '" + name +
                              "' (use fashion-mnist, mnist or cifar10)");
}

namespace {

Split make_split(std::vector<uint8_t> pixels, const std::vector<uint8_t>& labels, int64_t limit,
                 int64_t channels, int64_t side, Device dev) {
  int64_t n = static_cast<int64_t>(labels.size());
  if (limit > 0 && limit < n) n = limit;
  const int64_t per_image = channels * side * side;
  pixels.resize(n * per_image);
  Split s;
  s.labels.assign(labels.begin(), labels.begin() + n);
  s.images = Tensor::from_u8(pixels, {n, channels, side, side}, dev);
  s.labels_device = Tensor::from_i32(s.labels, {n}, dev);
  return s;
}

// Per-channel mean and standard deviation of the [0,1]-scaled training pixels.
void measure_normalisation(DataSet& ds, const std::vector<uint8_t>& pixels, int64_t n) {
  const int64_t S = ds.image_size * ds.image_size;
  ds.mean.assign(ds.channels, 0.0f);
  ds.stddev.assign(ds.channels, 1.0f);
  for (int64_t c = 0; c < ds.channels; ++c) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < S; ++k) {
        double p = pixels[(i * ds.channels + c) * S + k] / 255.0;
        sum += p;
        sq += p * p;
      }
    const double count = static_cast<double>(n * S);
    const double mean = sum / count;
    ds.mean[c] = static_cast<float>(mean);
    ds.stddev[c] = static_cast<float>(std::sqrt(std::max(sq / count - mean * mean, 1e-12)));
  }
}

}  // namespace

DataSet load_dataset(const DataConfig& cfg, Device dev) {
  DataSet ds;
  ds.name = cfg.name;
  const std::string dir = cfg.dir.empty() ? default_data_dir(cfg.name) : cfg.dir;
  if (!std::filesystem::is_directory(dir)) {
    std::string hint = cfg.name == "fashion-mnist"
                           ? "install Debian's dataset-fashion-mnist or pass --data-dir DIR"
                           : "pass --data-dir DIR with the dataset's files";
    throw std::runtime_error(dir + ": data directory not found; " + hint);
  }
  if (cfg.name == "fashion-mnist" || cfg.name == "mnist") {
    IdxDataset train = load_idx_split(dir, "train", 10);
    IdxDataset test = load_idx_split(dir, "t10k", 10);
    if (train.images.rows != train.images.cols || test.images.rows != train.images.rows) {
      throw std::runtime_error(dir + ": train and test images must be square and equal size");
    }
    ds.num_classes = 10;
    ds.channels = 1;
    ds.image_size = train.images.rows;
    int64_t n = train.images.count;
    if (cfg.train_limit > 0 && cfg.train_limit < n) n = cfg.train_limit;
    measure_normalisation(ds, train.images.pixels, n);
    ds.train = make_split(std::move(train.images.pixels), train.labels, cfg.train_limit, 1,
                          ds.image_size, dev);
    ds.test = make_split(std::move(test.images.pixels), test.labels, cfg.test_limit, 1,
                         ds.image_size, dev);
    return ds;
  }
  if (cfg.name == "cifar10") {
    // TODO(cifar): read the data_batch_1..5.bin and test_batch.bin files with read_cifar_bin;
    // the reader exists, the trainer wiring and augmentation do not yet.
    throw std::runtime_error("cifar10: training on CIFAR-10 is not wired into the trainer yet");
  }
  default_data_dir(cfg.name);  // throws the "unknown dataset" message
  return ds;
}

Batch make_batch(const DataSet& ds, const Split& split, const int32_t* indices, int64_t count) {
  Device dev = split.images.device();
  Tensor idx = Tensor::from_i32(std::vector<int32_t>(indices, indices + count), {count}, dev);
  Batch b;
  b.images = backend_for(dev).gather_normalize(split.images, idx, ds.mean, ds.stddev);
  std::vector<int32_t> labels(count);
  for (int64_t i = 0; i < count; ++i) labels[i] = split.labels[indices[i]];
  b.labels = Tensor::from_i32(labels, {count}, dev);
  return b;
}

}  // namespace sigmar
