// Tests of the .npy reader and writer: files written by NumPy itself (tests/fixtures, made by
// make_npy_fixtures.py) are read, our writer's output is compared byte for byte with np.save's,
// every dtype round-trips, and each kind of file we refuse is refused with a clear message.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/npy.hpp"
#include "tests/test_util.hpp"

namespace fs = std::filesystem;
using namespace test_util;
using sigmar::NpyArray;

namespace {

std::string fixture(const std::string& name) {
  return std::string(SIGMAR_SOURCE_DIR) + "/tests/fixtures/" + name;
}

template <typename T>
NpyArray make(const char* dtype, std::vector<int64_t> shape, const std::vector<T>& v) {
  NpyArray a{dtype, std::move(shape), Bytes(v.size() * sizeof(T))};
  if (!v.empty()) std::memcpy(a.bytes.data(), v.data(), a.bytes.size());
  return a;
}

}  // namespace

TEST_CASE("npy: reads the arrays NumPy wrote") {
  NpyArray a = sigmar::read_npy(fixture("npy_ref_f32.npy"));
  CHECK(a.dtype == "f32");
  CHECK(a.shape == std::vector<int64_t>{2, 3});
  CHECK(sigmar::npy_as_f32(a) == std::vector<float>{0.5f, -1.25f, 3.0f, 1e-3f, 100.0f, -7.75f});

  // f64 is rounded to the nearest float, as a C++ cast does.
  a = sigmar::read_npy(fixture("npy_ref_f64.npy"));
  CHECK(a.dtype == "f64");
  CHECK(a.shape == std::vector<int64_t>{3});
  CHECK(sigmar::npy_as_f32(a) == std::vector<float>{0.1f, -2.5f, 1e30f});

  a = sigmar::read_npy(fixture("npy_ref_u8.npy"));
  CHECK(a.dtype == "u8");
  CHECK(sigmar::npy_as_labels(a) == std::vector<int32_t>{0, 7, 255, 9});

  a = sigmar::read_npy(fixture("npy_ref_i32.npy"));
  CHECK(a.dtype == "i32");
  CHECK(a.shape == std::vector<int64_t>{2, 2});
  CHECK(sigmar::npy_as_labels(a) == std::vector<int32_t>{3, 0, 9, 1});

  a = sigmar::read_npy(fixture("npy_ref_i64.npy"));
  CHECK(a.dtype == "i64");
  CHECK(sigmar::npy_as_labels(a) == std::vector<int32_t>{5, 0, 2});

  // A 0-d array: empty shape, one element.
  a = sigmar::read_npy(fixture("npy_ref_scalar_f32.npy"));
  CHECK(a.shape.empty());
  CHECK(sigmar::npy_as_f32(a) == std::vector<float>{42.0f});

  // Format version 2.0: a 4-byte header length.
  a = sigmar::read_npy(fixture("npy_ref_v2_i64.npy"));
  CHECK(a.dtype == "i64");
  CHECK(a.shape == std::vector<int64_t>{1, 3});
  CHECK(sigmar::npy_as_labels(a) == std::vector<int32_t>{1, 2, 3});
}

TEST_CASE("npy: write_npy output is byte-identical to np.save") {
  ScratchDir d("npy-same");
  struct Case {
    const char* fixture;
    NpyArray array;
  };
  const std::vector<Case> cases = {
      {"npy_ref_f32.npy", sigmar::npy_f32({2, 3}, {0.5f, -1.25f, 3.0f, 1e-3f, 100.0f, -7.75f})},
      {"npy_ref_f64.npy", make<double>("f64", {3}, {0.1, -2.5, 1e30})},
      {"npy_ref_u8.npy", make<uint8_t>("u8", {4}, {0, 7, 255, 9})},
      {"npy_ref_i32.npy", sigmar::npy_i32({2, 2}, {3, 0, 9, 1})},
      {"npy_ref_i64.npy", make<int64_t>("i64", {3}, {5, 0, 2})},
      {"npy_ref_scalar_f32.npy", sigmar::npy_f32({}, {42.0f})},
  };
  for (const Case& c : cases) {
    CAPTURE(c.fixture);
    const std::string out = d.path(c.fixture);
    sigmar::write_npy(out, c.array);
    CHECK(read_bytes(out) == read_bytes(fixture(c.fixture)));
    CHECK_FALSE(fs::exists(out + ".tmp"));
  }
}

TEST_CASE("npy: every dtype round-trips, including empty and 3-D shapes") {
  ScratchDir d("npy-roundtrip");
  const std::vector<NpyArray> arrays = {
      sigmar::npy_f32({2, 1, 3}, {1.5f, -0.0f, 3e-38f, 1e38f, -2.0f, 7.0f}),
      make<double>("f64", {2}, {1.0 / 3.0, -1e300}),
      make<uint8_t>("u8", {3, 1}, {255, 0, 128}),
      sigmar::npy_i32({4}, {std::numeric_limits<int32_t>::min(), -1, 0, 2147483647}),
      make<int64_t>("i64", {1, 2}, {-(int64_t(1) << 62), int64_t(1) << 40}),
      sigmar::npy_f32({0, 5}, {}),
  };
  for (size_t i = 0; i < arrays.size(); ++i) {
    CAPTURE(i);
    const std::string p = d.path(std::to_string(i) + ".npy");
    sigmar::write_npy(p, arrays[i]);
    const NpyArray back = sigmar::read_npy(p);
    CHECK(back.dtype == arrays[i].dtype);
    CHECK(back.shape == arrays[i].shape);
    CHECK(back.bytes == arrays[i].bytes);
    // np.save pads the header so the data starts on a 64-byte boundary.
    CHECK((read_bytes(p).size() - back.bytes.size()) % 64 == 0);
  }
}

TEST_CASE("npy: refuses Fortran order, big-endian and other dtypes") {
  std::string msg = error_of([] { sigmar::read_npy(fixture("npy_ref_fortran.npy")); });
  CHECK(msg.rfind(fixture("npy_ref_fortran.npy") + ": ", 0) == 0);
  CHECK(contains(msg, "Fortran order"));

  msg = error_of([] { sigmar::read_npy(fixture("npy_ref_big_endian.npy")); });
  CHECK(contains(msg, "dtype '>f4' is big-endian"));

  msg = error_of([] { sigmar::read_npy(fixture("npy_ref_f16.npy")); });
  CHECK(contains(msg, "dtype '<f2' is not supported"));
}

TEST_CASE("npy: refuses bad magic, bad versions, damaged headers and wrong lengths") {
  ScratchDir d("npy-bad");
  const Bytes good = read_bytes(fixture("npy_ref_f32.npy"));

  write_bytes(d.path("text.npy"), Bytes{'h', 'e', 'l', 'l', 'o', ' ', 'n', 'p', 'y', '\n'});
  std::string msg = error_of([&] { sigmar::read_npy(d.path("text.npy")); });
  CHECK(msg.rfind(d.path("text.npy") + ": not a .npy file", 0) == 0);

  Bytes v4 = good;
  v4[6] = 4;
  write_bytes(d.path("v4.npy"), v4);
  CHECK(contains(error_of([&] { sigmar::read_npy(d.path("v4.npy")); }),
                 "format version 4.0 is not supported"));

  // One data byte short, then one byte too many.
  Bytes shorter(good.begin(), good.end() - 1);
  write_bytes(d.path("short.npy"), shorter);
  msg = error_of([&] { sigmar::read_npy(d.path("short.npy")); });
  CHECK(contains(msg, "expected 24 bytes of data for shape (2, 3) <f4, found 23 (truncated)"));
  Bytes longer = good;
  longer.push_back(0);
  write_bytes(d.path("long.npy"), longer);
  CHECK(contains(error_of([&] { sigmar::read_npy(d.path("long.npy")); }), "found 25 (trailing"));

  // Cut inside the header.
  write_bytes(d.path("cut.npy"), Bytes(good.begin(), good.begin() + 40));
  CHECK(contains(error_of([&] { sigmar::read_npy(d.path("cut.npy")); }),
                 "runs past the end of the 40-byte file"));

  // A header whose dict is damaged: 'shape' renamed, then the tuple made negative.
  Bytes renamed = good;
  const std::string text(good.begin(), good.end());
  renamed[text.find("shape")] = 'x';
  write_bytes(d.path("key.npy"), renamed);
  CHECK(contains(error_of([&] { sigmar::read_npy(d.path("key.npy")); }),
                 "damaged .npy header: unexpected key 'xhape'"));
  Bytes negative = good;
  negative[text.find("(2, 3)") + 1] = '-';
  write_bytes(d.path("neg.npy"), negative);
  CHECK(contains(error_of([&] { sigmar::read_npy(d.path("neg.npy")); }),
                 "a shape entry is not a non-negative integer"));

  CHECK(error_of([&] { sigmar::read_npy(d.path("absent.npy")); }) ==
        d.path("absent.npy") + ": file not found");
}

TEST_CASE("npy: converters check dtypes and label ranges") {
  // npy_as_f32 refuses integers; npy_as_labels refuses floats.
  CHECK(contains(error_of([] { sigmar::npy_as_f32(sigmar::npy_i32({2}, {1, 2})); }),
                 "holds i32 integers, not floats"));
  CHECK(contains(error_of([] { sigmar::npy_as_labels(sigmar::npy_f32({1}, {1.0f})); }),
                 "labels must be u8, i32 or i64"));

  // i64 labels must fit an int32 class index; negatives are refused for every type.
  const NpyArray big = make<int64_t>("i64", {3}, {0, 2147483648LL, 1});
  CHECK(contains(error_of([&] { sigmar::npy_as_labels(big); }),
                 "label 2147483648 at index 1 is not a class index"));
  CHECK(contains(error_of([] { sigmar::npy_as_labels(sigmar::npy_i32({2}, {4, -1})); }),
                 "label -1 at index 1"));
  const NpyArray largest = make<int64_t>("i64", {1}, {2147483647LL});
  CHECK(sigmar::npy_as_labels(largest) == std::vector<int32_t>{2147483647});

  // Bytes that do not match the shape are caught, not read past.
  NpyArray broken = sigmar::npy_f32({2}, {1.0f, 2.0f});
  broken.shape = {3};
  CHECK(contains(error_of([&] { sigmar::npy_as_f32(broken); }), "do not match dtype 'f32'"));

  CHECK(contains(error_of([] { sigmar::npy_f32({2, 2}, {1.0f}); }),
                 "shape (2, 2) does not hold 1 values"));
}

TEST_CASE("npy: writes are atomic and refuse bad arrays") {
  ScratchDir d("npy-write");
  const std::string p = d.path("keep.npy");
  sigmar::write_npy(p, sigmar::npy_f32({1}, {5.0f}));
  const Bytes before = read_bytes(p);

  NpyArray wrong = sigmar::npy_f32({2}, {1.0f, 2.0f});
  wrong.shape = {3};
  CHECK(contains(error_of([&] { sigmar::write_npy(p, wrong); }), "needs 12 bytes"));
  NpyArray f16 = wrong;
  f16.dtype = "f16";
  CHECK(contains(error_of([&] { sigmar::write_npy(p, f16); }), "cannot write dtype 'f16'"));
  CHECK(read_bytes(p) == before);
  CHECK_FALSE(fs::exists(p + ".tmp"));

  const std::string nowhere = d.path("no-dir/x.npy");
  const std::string msg = error_of([&] { sigmar::write_npy(nowhere, sigmar::npy_f32({}, {1})); });
  CHECK(msg.rfind(nowhere + ": cannot write .npy file", 0) == 0);
  CHECK_FALSE(fs::exists(nowhere));
}
