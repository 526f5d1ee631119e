// Datasets in memory: the raw u8 images of each split uploaded once to the run's device,
// labels on both host and device, and the per-channel normalisation of the training split
// (SPEC 4). Batches are gathered and normalised on the device from shuffled indices.
#pragma once

#include "engine/rng.hpp"
#include "engine/tensor.hpp"

#include <string>
#include <vector>

namespace sigmar {

struct Split {
  Tensor images;                 // u8 [N, C, H, W] on the run's device
  std::vector<int32_t> labels;   // host copy, for metrics
  Tensor labels_device;          // i32 [N] on the run's device
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

struct DataSet {
  std::string name;
  int64_t num_classes = 10, channels = 1, image_size = 28;
  std::vector<float> mean, stddev;  // per channel, of the training split's [0,1] pixels
  Split train, test;
};

struct DataConfig {
  std::string name = "fashion-mnist";  // fashion-mnist | mnist | cifar10
  std::string dir;                     // empty: the dataset's default location
  int64_t train_limit = 0;             // use the first N training images (0: all)
  int64_t test_limit = 0;              // use the first N test images (0: all)
};

std::string default_data_dir(const std::string& name);
DataSet load_dataset(const DataConfig& cfg, Device dev);

// One batch: normalised images [B,C,H,W] and labels [B], both on the split's device.
struct Batch {
  Tensor images, labels;
};
Batch make_batch(const DataSet& ds, const Split& split, const int32_t* indices, int64_t count);

}  // namespace sigmar
