// Tests of the IDX and CIFAR readers: CASES.md 16 (the fixture, raw and gzipped), every CASES 17
// must-fail, and, where Debian's dataset-fashion-mnist is installed, the real training split.
// Each error test checks the message names the file and says what was wrong.
#include <doctest/doctest.h>
#include <zlib.h>

#include <array>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/idx.hpp"
#include "tests/test_util.hpp"

namespace fs = std::filesystem;
using namespace test_util;
using sigmar::IdxDataset;
using sigmar::IdxImages;

namespace {

void write_gzip(const std::string& path, const Bytes& b) {
  gzFile gz = gzopen(path.c_str(), "wb");
  REQUIRE(gz != nullptr);
  REQUIRE(gzwrite(gz, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  REQUIRE(gzclose(gz) == Z_OK);
}

// CASES.md 16: two 2×3 images holding 0..11, and the labels [7, 2].
Bytes case16_images() {
  Bytes b = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
  for (uint8_t v = 0; v < 12; ++v) b.push_back(v);
  return b;
}
Bytes case16_labels() { return {0, 0, 8, 1, 0, 0, 0, 2, 7, 2}; }

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

void check_case16_images(const IdxImages& im) {
  CHECK(im.count == 2);
  CHECK(im.rows == 2);
  CHECK(im.cols == 3);
  REQUIRE(im.pixels.size() == 12);
  // Image 0 is [[0,1,2],[3,4,5]], image 1 is [[6,7,8],[9,10,11]], row-major.
  for (int i = 0; i < 12; ++i) CHECK(im.pixels[i] == i);
  CHECK(im.pixels[1 * 6 + 1 * 3 + 2] == 11);  // image 1, row 1, col 2
}

}  // namespace

TEST_CASE("idx: CASES 16 fixture, raw files") {
  ScratchDir d("idx-raw");
  write_bytes(d.path("im"), case16_images());
  write_bytes(d.path("lb"), case16_labels());
  check_case16_images(sigmar::read_idx_images(d.path("im")));
  CHECK(sigmar::read_idx_labels(d.path("lb"), 10) == Bytes{7, 2});
}

TEST_CASE("idx: CASES 16 fixture, gzipped, decompressed transparently") {
  ScratchDir d("idx-gz");
  write_gzip(d.path("im.gz"), case16_images());
  write_gzip(d.path("lb.gz"), case16_labels());
  REQUIRE(read_bytes(d.path("im.gz"))[0] == 0x1f);
  check_case16_images(sigmar::read_idx_images(d.path("im.gz")));
  CHECK(sigmar::read_idx_labels(d.path("lb.gz"), 10) == Bytes{7, 2});

  // CASES 17: a gzip file under a raw name (first bytes 1f 8b) is still gunzipped.
  write_gzip(d.path("train-images-idx3-ubyte"), case16_images());
  check_case16_images(sigmar::read_idx_images(d.path("train-images-idx3-ubyte")));
}

TEST_CASE("idx: load_idx_split finds raw and .gz files and pairs them") {
  ScratchDir d("idx-split");
  write_gzip(d.path("train-images-idx3-ubyte.gz"), case16_images());
  write_bytes(d.path("train-labels-idx1-ubyte"), case16_labels());
  const IdxDataset ds = sigmar::load_idx_split(d.dir.string(), "train", 10);
  check_case16_images(ds.images);
  CHECK(ds.labels == Bytes{7, 2});

  // 8 classes still admit 7 and 2; 7 classes do not admit 7.
  CHECK(sigmar::load_idx_split(d.dir.string(), "train", 8).labels == Bytes{7, 2});
  CHECK(contains(error_of([&] { sigmar::load_idx_split(d.dir.string(), "train", 7); }),
                 "label byte 7 at index 0 is out of range for 7 classes"));
}

TEST_CASE("idx: CASES 17 header written little-endian") {
  ScratchDir d("idx-le");
  Bytes b = case16_images();
  // Each 32-bit field byte-reversed, as a little-endian writer would leave it.
  for (size_t f = 0; f < 16; f += 4) std::swap(b[f], b[f + 3]), std::swap(b[f + 1], b[f + 2]);
  write_bytes(d.path("le-images"), b);
  const std::string msg = error_of([&] { sigmar::read_idx_images(d.path("le-images")); });
  CHECK(starts_with(msg, d.path("le-images") + ": "));
  CHECK(contains(msg, "magic 50855936 (0x03080000)"));
  CHECK(contains(msg, "little-endian"));
  CHECK(contains(msg, "expected magic 2051"));
}

TEST_CASE("idx: CASES 17 11 of 12 pixel bytes, and trailing bytes") {
  ScratchDir d("idx-short");
  Bytes b = case16_images();
  b.pop_back();
  write_bytes(d.path("short"), b);
  std::string msg = error_of([&] { sigmar::read_idx_images(d.path("short")); });
  CHECK(starts_with(msg, d.path("short") + ": "));
  CHECK(contains(msg, "expected 12 bytes of pixels"));
  CHECK(contains(msg, "found 11"));
  CHECK(contains(msg, "truncated"));

  // The same, gzipped: the error says the count is after decompression.
  write_gzip(d.path("short.gz"), b);
  msg = error_of([&] { sigmar::read_idx_images(d.path("short.gz")); });
  CHECK(contains(msg, "found 11 (after gunzip)"));

  Bytes longer = case16_images();
  longer.push_back(99);
  write_bytes(d.path("long"), longer);
  msg = error_of([&] { sigmar::read_idx_images(d.path("long")); });
  CHECK(contains(msg, "1 bytes of trailing data after 12 bytes of pixels"));

  Bytes labels = case16_labels();
  labels.pop_back();
  write_bytes(d.path("short-labels"), labels);
  msg = error_of([&] { sigmar::read_idx_labels(d.path("short-labels"), 10); });
  CHECK(contains(msg, "expected 2 bytes of labels"));
  CHECK(contains(msg, "found 1"));
}

TEST_CASE("idx: CASES 17 labels file given as images, and the reverse") {
  ScratchDir d("idx-swap");
  write_bytes(d.path("labels"), case16_labels());
  write_bytes(d.path("images"), case16_images());
  std::string msg = error_of([&] { sigmar::read_idx_images(d.path("labels")); });
  CHECK(starts_with(msg, d.path("labels") + ": "));
  CHECK(contains(msg, "magic 2049"));
  CHECK(contains(msg, "IDX labels file"));
  CHECK(contains(msg, "expected magic 2051"));

  msg = error_of([&] { sigmar::read_idx_labels(d.path("images"), 10); });
  CHECK(contains(msg, "magic 2051"));
  CHECK(contains(msg, "expected magic 2049"));
}

TEST_CASE("idx: CASES 17 image and label counts differ") {
  ScratchDir d("idx-count");
  write_bytes(d.path("t10k-images-idx3-ubyte"), case16_images());
  write_bytes(d.path("t10k-labels-idx1-ubyte"), {0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3});
  const std::string msg = error_of([&] { sigmar::load_idx_split(d.dir.string(), "t10k", 10); });
  CHECK(starts_with(msg, d.path("t10k-labels-idx1-ubyte") + ": "));
  CHECK(contains(msg, "holds 3 labels"));
  CHECK(contains(msg, "holds 2 images"));
}

TEST_CASE("idx: CASES 17 label byte 10 for 10 classes") {
  ScratchDir d("idx-label");
  write_bytes(d.path("lb"), {0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 9, 10, 0});
  const std::string msg = error_of([&] { sigmar::read_idx_labels(d.path("lb"), 10); });
  CHECK(starts_with(msg, d.path("lb") + ": "));
  CHECK(contains(msg, "label byte 10 at index 3 is out of range for 10 classes"));
  // With 11 classes the same file is fine.
  CHECK(sigmar::read_idx_labels(d.path("lb"), 11) == Bytes{1, 2, 9, 10, 0});
  CHECK(contains(error_of([&] { sigmar::read_idx_labels(d.path("lb"), 0); }), "num_classes"));
}

TEST_CASE("idx: damaged headers, damaged gzip, empty images") {
  ScratchDir d("idx-damaged");
  write_bytes(d.path("tiny"), {0, 0, 8, 3, 0});
  std::string msg = error_of([&] { sigmar::read_idx_images(d.path("tiny")); });
  CHECK(contains(msg, "file is 5 bytes, too short for a 16-byte IDX images header"));
  CHECK(contains(msg, "the file is truncated, replace it"));

  write_bytes(d.path("text"), Bytes{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '!',
                                    ' ', ' ', ' ', '\n'});
  msg = error_of([&] { sigmar::read_idx_images(d.path("text")); });
  CHECK(contains(msg, "is not IDX"));
  CHECK(contains(msg, "replace it with the real file"));

  Bytes zero_rows = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3};
  write_bytes(d.path("zero"), zero_rows);
  CHECK(contains(error_of([&] { sigmar::read_idx_images(d.path("zero")); }), "0x3 pixels"));

  // A .gz cut in the middle of its deflate stream.
  write_gzip(d.path("cut.gz"), case16_images());
  Bytes gz = read_bytes(d.path("cut.gz"));
  gz.resize(gz.size() / 2);
  write_bytes(d.path("cut.gz"), gz);
  msg = error_of([&] { sigmar::read_idx_images(d.path("cut.gz")); });
  CHECK(starts_with(msg, d.path("cut.gz") + ": "));
  CHECK(contains(msg, "gzip"));

  msg = error_of([&] { sigmar::read_idx_images(d.path("absent")); });
  CHECK(msg == d.path("absent") + ": file not found");
}

TEST_CASE("idx: missing data directory or file says how to get the data") {
  ScratchDir d("idx-missing");
  const std::string nowhere = d.path("no-such-dir");
  std::string msg = error_of([&] { sigmar::load_idx_split(nowhere, "train", 10); });
  CHECK(starts_with(msg, nowhere + ": "));
  CHECK(contains(msg, "dataset-fashion-mnist"));
  CHECK(contains(msg, "--data-dir"));

  write_bytes(d.path("train-images-idx3-ubyte"), case16_images());
  msg = error_of([&] { sigmar::load_idx_split(d.dir.string(), "train", 10); });
  CHECK(starts_with(msg, d.path("train-labels-idx1-ubyte") + "[.gz]: not found"));
  CHECK(contains(msg, "--data-dir"));

  msg = error_of([&] { sigmar::load_idx_split(d.dir.string(), "test", 10); });
  CHECK(contains(msg, "unknown IDX split 'test'"));
}

TEST_CASE("idx: CIFAR-10 and CIFAR-100 binary records") {
  ScratchDir d("idx-cifar");
  // Two CIFAR-10 records: labels 3 and 9, pixel k of record r holds (r*7 + k) mod 256.
  Bytes c10;
  for (int r = 0; r < 2; ++r) {
    c10.push_back(r == 0 ? 3 : 9);
    for (int k = 0; k < 3072; ++k) c10.push_back(static_cast<uint8_t>((r * 7 + k) % 256));
  }
  write_bytes(d.path("c10.bin"), c10);
  const sigmar::CifarData a = sigmar::read_cifar_bin(d.path("c10.bin"), false);
  CHECK(a.count == 2);
  CHECK(a.labels == Bytes{3, 9});
  CHECK(a.coarse_labels.empty());
  REQUIRE(a.pixels.size() == 2 * 3072);
  CHECK(a.pixels[0] == 0);
  CHECK(a.pixels[1024] == 0);           // first green pixel of record 0: 1024 mod 256
  CHECK(a.pixels[3072 + 5] == 12);      // record 1, red plane, pixel 5: 7 + 5
  CHECK(a.pixels[2 * 3072 - 1] == static_cast<uint8_t>((7 + 3071) % 256));

  // CIFAR-100: coarse then fine label per record.
  Bytes c100 = {4, 57};
  c100.resize(2 + 3072, 200);
  write_bytes(d.path("c100.bin"), c100);
  const sigmar::CifarData b = sigmar::read_cifar_bin(d.path("c100.bin"), true);
  CHECK(b.count == 1);
  CHECK(b.coarse_labels == Bytes{4});
  CHECK(b.labels == Bytes{57});
  CHECK(b.pixels[3071] == 200);

  // The same bytes read as CIFAR-10 are not a whole number of 3073-byte records.
  std::string msg = error_of([&] { sigmar::read_cifar_bin(d.path("c100.bin"), false); });
  CHECK(starts_with(msg, d.path("c100.bin") + ": "));
  CHECK(contains(msg, "3074 bytes is not a whole number of 3073-byte CIFAR-10 records"));

  c10[3073] = 10;  // record 1's label
  write_bytes(d.path("bad.bin"), c10);
  msg = error_of([&] { sigmar::read_cifar_bin(d.path("bad.bin"), false); });
  CHECK(contains(msg, "label byte 10 at index 1 is out of range for 10 classes"));
  c100[0] = 20;
  write_bytes(d.path("bad100.bin"), c100);
  msg = error_of([&] { sigmar::read_cifar_bin(d.path("bad100.bin"), true); });
  CHECK(contains(msg, "coarse label byte 20 at index 0 is out of range for 20 classes"));
  write_bytes(d.path("empty.bin"), {});
  CHECK(contains(error_of([&] { sigmar::read_cifar_bin(d.path("empty.bin"), false); }),
                 "file is empty"));
}

TEST_CASE("idx: the real Fashion-MNIST splits, when installed") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir)) {
    MESSAGE("skipped: " << dir << " is absent (install Debian's dataset-fashion-mnist)");
    return;
  }
  const IdxDataset train = sigmar::load_idx_split(dir, "train", 10);
  CHECK(train.images.count == 60000);
  CHECK(train.images.rows == 28);
  CHECK(train.images.cols == 28);
  // SPEC 4: the raw images file is 47,040,016 bytes, i.e. the 16-byte header and the pixels.
  CHECK(train.images.pixels.size() + 16 == 47040016u);
  REQUIRE(train.labels.size() == 60000);
  // Fashion-MNIST is balanced: 6,000 training images per class.
  std::array<int, 10> per_class{};
  int out_of_range = 0;
  for (uint8_t l : train.labels) l < 10 ? ++per_class[l] : ++out_of_range;
  CHECK(out_of_range == 0);
  for (int c = 0; c < 10; ++c) CHECK(per_class[c] == 6000);

  const IdxDataset test = sigmar::load_idx_split(dir, "t10k", 10);
  CHECK(test.images.count == 10000);
  CHECK(test.labels.size() == 10000);
}
