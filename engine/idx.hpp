// Readers for the image data sets' own binary formats (SPEC 4), kept apart from the Tensor
// class so they can be tested alone: IDX (MNIST, Fashion-MNIST), raw or gzip, and the CIFAR-10
// and CIFAR-100 binary records.
//
// Nothing here trusts its input (CASES, fault kind 6): magic, header, sizes, the exact length of
// the data and every label are checked. Each failure is a std::runtime_error whose one line
// starts with the file's path and says what was found and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sigmar {

// An IDX images file: `count` images of rows×cols bytes, row-major, one after another
// (pixels.size() == count*rows*cols).
struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
};

// Reads an IDX images file (magic 2051), raw or gzip (told apart by the bytes 1f 8b).
IdxImages read_idx_images(const std::string& path);

// Reads an IDX labels file (magic 2049), raw or gzip; every label must be < num_classes.
std::vector<uint8_t> read_idx_labels(const std::string& path, int num_classes);

struct IdxDataset {
  IdxImages images;
  std::vector<uint8_t> labels;  // labels.size() == images.count
};

// Loads `<dir>/<split>-images-idx3-ubyte[.gz]` and `<dir>/<split>-labels-idx1-ubyte[.gz]`,
// split being "train" or "t10k", and checks that they hold as many images as labels.
IdxDataset load_idx_split(const std::string& dir, const std::string& split, int num_classes);

// CIFAR binary batches: records of label byte(s) then 3072 pixel bytes, channel-planar
// (1024 R, 1024 G, 1024 B, each 32×32 row-major), i.e. pixels is [count, 3, 32, 32].
struct CifarData {
  int64_t count = 0;
  std::vector<uint8_t> pixels;         // count * 3072
  std::vector<uint8_t> labels;         // CIFAR-10: the class (< 10); CIFAR-100: fine (< 100)
  std::vector<uint8_t> coarse_labels;  // CIFAR-100 only: the superclass (< 20); else empty
};

CifarData read_cifar_bin(const std::string& path, bool cifar100);

}  // namespace sigmar
