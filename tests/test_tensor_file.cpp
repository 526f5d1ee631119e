// Tests of the checkpoint container: a round trip of every dtype with metadata, the on-disk
// layout, each kind of damaged file refused with a clear message, and the crash-safe write
// (no .tmp left behind, an existing checkpoint untouched when a write fails part-way).
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/tensor_file.hpp"
#include "tests/test_util.hpp"

namespace fs = std::filesystem;
using namespace test_util;
using nlohmann::json;
using sigmar::NamedBuffer;

namespace {

template <typename T>
NamedBuffer buffer(const std::string& name, const char* dtype, std::vector<int64_t> shape,
                   const std::vector<T>& v) {
  NamedBuffer b{name, dtype, std::move(shape), Bytes(v.size() * sizeof(T))};
  if (!v.empty()) std::memcpy(b.bytes.data(), v.data(), b.bytes.size());
  return b;
}

// A hand-made file: 8-byte little-endian length, the header text as given, then `data`.
Bytes craft(const std::string& header, const Bytes& data) {
  Bytes f;
  f.reserve(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i) f.push_back(static_cast<uint8_t>(uint64_t(header.size()) >> (8 * i)));
  for (char c : header) f.push_back(static_cast<uint8_t>(c));
  f.insert(f.end(), data.begin(), data.end());
  return f;
}

// A small but complete checkpoint: every dtype, a scalar, an empty buffer, and names that are
// not in sorted order (the file must keep the written order).
std::vector<NamedBuffer> sample_buffers() {
  return {
      buffer<float>("z.weight", "F32", {2, 3}, {1.5f, -2.0f, 0.0f, 3.25f, -0.5f, 1e-30f}),
      buffer<int32_t>("labels", "I32", {4}, {0, 9, -1, 2147483647}),
      buffer<uint8_t>("flag", "U8", {}, {1}),
      buffer<int64_t>("adam.step", "I64", {1}, {-(int64_t(1) << 40)}),
      buffer<uint64_t>("rng.state", "U64", {2}, {0xffffffffffffffffull, 0x0123456789abcdefull}),
      buffer<float>("a.empty", "F32", {0, 4}, {}),
  };
}

json sample_metadata() {
  return {{"config", {{"model", "lenetpp"}, {"lr", 0.1}, {"lambda", 0.003}}},
          {"epoch", 3},
          {"data_position", 1234},
          {"rng", {0xffffffffffffffffull, 42}}};
}

}  // namespace

TEST_CASE("tensor file: round trip keeps every buffer, its order and the metadata") {
  ScratchDir d("ckpt-roundtrip");
  const std::string p = d.path("run.ckpt");
  const std::vector<NamedBuffer> written = sample_buffers();
  sigmar::write_tensor_file(p, written, sample_metadata());
  CHECK_FALSE(fs::exists(p + ".tmp"));

  const sigmar::TensorFile tf = sigmar::read_tensor_file(p);
  CHECK(tf.metadata == sample_metadata());
  CHECK(tf.metadata["rng"][0].get<uint64_t>() == 0xffffffffffffffffull);
  CHECK(tf.metadata["config"]["lr"].get<double>() == 0.1);
  REQUIRE(tf.buffers.size() == written.size());
  for (size_t i = 0; i < written.size(); ++i) {
    CAPTURE(written[i].name);
    CHECK(tf.buffers[i].name == written[i].name);
    CHECK(tf.buffers[i].dtype == written[i].dtype);
    CHECK(tf.buffers[i].shape == written[i].shape);
    CHECK(tf.buffers[i].bytes == written[i].bytes);
  }
  float w[6];
  std::memcpy(w, tf.get("z.weight").bytes.data(), sizeof w);
  CHECK(w[3] == 3.25f);
  CHECK(w[5] == 1e-30f);
  CHECK(tf.has("rng.state"));
  CHECK_FALSE(tf.has("missing"));
  const std::string msg = error_of([&] { tf.get("fc.bias"); });
  CHECK(msg.rfind(p + ": checkpoint has no entry 'fc.bias'", 0) == 0);
  CHECK(contains(msg, "6 entries: z.weight, labels"));

  // Overwriting replaces the file whole.
  sigmar::write_tensor_file(p, {written[2]}, nullptr);
  const sigmar::TensorFile again = sigmar::read_tensor_file(p);
  CHECK(again.metadata.is_null());
  REQUIRE(again.buffers.size() == 1);
  CHECK(again.buffers[0].name == "flag");
}

TEST_CASE("tensor file: the layout is safetensors-style") {
  ScratchDir d("ckpt-layout");
  const std::string p = d.path("l.ckpt");
  sigmar::write_tensor_file(p, {buffer<float>("w", "F32", {2}, {1.0f, 2.0f}),
                                buffer<int32_t>("b", "I32", {1}, {7})},
                            json{{"epoch", 1}});
  const Bytes f = read_bytes(p);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(f[i]) << (8 * i);
  CHECK((8 + n) % 8 == 0);  // data starts 8-byte aligned
  CHECK(f.size() == 8 + n + 12);
  const json h = json::parse(f.begin() + 8, f.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  CHECK(h["w"] == json{{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}});
  CHECK(h["b"] == json{{"dtype", "I32"}, {"shape", {1}}, {"data_offsets", {8, 12}}});
  CHECK(h["__metadata__"]["epoch"] == 1);
  float w1;
  std::memcpy(&w1, f.data() + 8 + n + 4, 4);
  CHECK(w1 == 2.0f);
  CHECK(f.back() == 0);  // int32 7, little-endian: 07 00 00 00
  CHECK(f[8 + n + 8] == 7);
}

TEST_CASE("tensor file: damaged files are refused, naming the file and the fault") {
  ScratchDir d("ckpt-damaged");
  const std::string p = d.path("good.ckpt");
  sigmar::write_tensor_file(p, sample_buffers(), sample_metadata());
  const Bytes good = read_bytes(p);
  const std::string bad = d.path("bad.ckpt");
  auto refused = [&](const Bytes& contents) {
    write_bytes(bad, contents);
    const std::string msg = error_of([&] { sigmar::read_tensor_file(bad); });
    CHECK(msg.rfind(bad + ": not a valid sigmar checkpoint: ", 0) == 0);
    return msg;
  };

  // Truncated: one byte short of the data, and shorter than the length field itself.
  std::string msg = refused(Bytes(good.begin(), good.end() - 1));
  CHECK(contains(msg, "entry 'rng.state' ends at data byte"));
  CHECK(contains(msg, "(truncated)"));
  msg = refused(Bytes(good.begin(), good.begin() + 5));
  CHECK(contains(msg, "the file is 5 bytes, too short"));

  // A corrupted header length.
  Bytes len = good;
  len[5] = 0x40;
  msg = refused(len);
  CHECK(contains(msg, "header length"));
  CHECK(contains(msg, "runs past the end of the " + std::to_string(good.size()) + "-byte file"));

  // Bad JSON, same length.
  Bytes text = good;
  text[8] = 'x';
  CHECK(contains(refused(text), "the header is not valid JSON"));
  CHECK(contains(refused(craft("[1, 2]", {})), "the header is not a JSON object"));

  // A byte count that does not match shape × dtype size.
  msg = refused(craft(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
                      Bytes(20)));
  CHECK(contains(msg, "entry 'w' spans 20 bytes, but shape [2, 3] of F32 needs 24"));

  // Overlapping entries, a gap, trailing data, offsets past the end.
  msg = refused(craft(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      Bytes(12)));
  CHECK(contains(msg, "entry 'b' overlaps the entry before it"));
  msg = refused(craft(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", Bytes(4)));
  CHECK(contains(msg, "a gap of 2 bytes before entry 'a'"));
  msg = refused(craft(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", Bytes(5)));
  CHECK(contains(msg, "3 bytes of data after the last entry"));
  msg = refused(craft(R"({"a":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}})", Bytes(5)));
  CHECK(contains(msg, "entry 'a' ends at data byte 9, but the file holds only 5 data bytes"));

  // Entries that are not what they claim.
  msg = refused(craft(R"({"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})", Bytes(2)));
  CHECK(contains(msg, "entry 'a' has unknown dtype 'F16'"));
  msg = refused(craft(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", {}));
  CHECK(contains(msg, "shape entry that is not a non-negative integer"));
  msg = refused(craft(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}})", Bytes(1)));
  CHECK(contains(msg, "run backwards"));
  msg = refused(craft(R"({"a":{"dtype":"U8","shape":[1]}})", Bytes(1)));
  CHECK(contains(msg, "entry 'a' has no data_offsets pair"));

  const std::string absent = d.path("absent.ckpt");
  CHECK(error_of([&] { sigmar::read_tensor_file(absent); }) ==
        absent + ": cannot read checkpoint: file not found; check the path");
}

TEST_CASE("tensor file: invalid buffers are refused before anything is written") {
  ScratchDir d("ckpt-invalid");
  const std::string p = d.path("keep.ckpt");
  sigmar::write_tensor_file(p, sample_buffers(), sample_metadata());
  const Bytes before = read_bytes(p);

  std::vector<NamedBuffer> wrong = sample_buffers();
  wrong[0].shape = {3, 3};
  CHECK(contains(error_of([&] { sigmar::write_tensor_file(p, wrong, nullptr); }),
                 "entry 'z.weight': shape [3, 3] of F32 does not match its 24 bytes"));
  std::vector<NamedBuffer> twice = {sample_buffers()[1], sample_buffers()[1]};
  CHECK(contains(error_of([&] { sigmar::write_tensor_file(p, twice, nullptr); }),
                 "entry 'labels': the name is repeated"));
  std::vector<NamedBuffer> reserved = {buffer<uint8_t>("__metadata__", "U8", {1}, {0})};
  CHECK(contains(error_of([&] { sigmar::write_tensor_file(p, reserved, nullptr); }),
                 "the name is empty or reserved"));
  std::vector<NamedBuffer> f16 = {buffer<uint16_t>("h", "F16", {1}, {0})};
  CHECK(contains(error_of([&] { sigmar::write_tensor_file(p, f16, nullptr); }),
                 "unknown dtype 'F16'"));
  // Metadata that JSON cannot hold (a string that is not UTF-8).
  CHECK(contains(error_of([&] { sigmar::write_tensor_file(p, {}, json{{"s", "\xff"}}); }),
                 "metadata cannot be stored as JSON"));

  CHECK(read_bytes(p) == before);
  CHECK_FALSE(fs::exists(p + ".tmp"));
}

TEST_CASE("tensor file: a write that fails part-way leaves the old checkpoint and no .tmp") {
  ScratchDir d("ckpt-midway");
  const std::string p = d.path("run.ckpt");
  sigmar::write_tensor_file(p, sample_buffers(), sample_metadata());
  const Bytes before = read_bytes(p);

  // A stale temporary from a crashed run is replaced, not appended to or trusted.
  write_bytes(p + ".tmp", Bytes(100, 0xee));
  sigmar::write_tensor_file(p, sample_buffers(), sample_metadata());
  CHECK(read_bytes(p) == before);
  CHECK_FALSE(fs::exists(p + ".tmp"));

  // A file-size limit makes write() fail with EFBIG after 64 KiB of a 1 MiB checkpoint: a real
  // failure in the middle of the data. SIGXFSZ would otherwise kill the test binary.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  rlimit small = old;
  small.rlim_cur = 64 * 1024;
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  if (::setrlimit(RLIMIT_FSIZE, &small) != 0) {
    std::signal(SIGXFSZ, old_handler);
    MESSAGE("skipped the part-way failure: setrlimit(RLIMIT_FSIZE) is not allowed here");
  } else {
    const std::vector<NamedBuffer> big = {
        buffer<float>("big", "F32", {256, 1024}, std::vector<float>(256 * 1024, 1.0f))};
    const std::string msg = error_of([&] { sigmar::write_tensor_file(p, big, nullptr); });
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    CHECK(msg.rfind(p + ": cannot write checkpoint: writing " + p + ".tmp failed", 0) == 0);
    CHECK(contains(msg, "too large"));  // strerror(EFBIG): "File too large"
  }
  CHECK(read_bytes(p) == before);
  CHECK_FALSE(fs::exists(p + ".tmp"));
  CHECK(sigmar::read_tensor_file(p).metadata == sample_metadata());

  // A directory that does not exist: the error names the path and the fix.
  const std::string nowhere = d.path("no-such-dir/run.ckpt");
  const std::string msg =
      error_of([&] { sigmar::write_tensor_file(nowhere, sample_buffers(), nullptr); });
  CHECK(msg.rfind(nowhere + ": cannot write checkpoint: creating " + nowhere + ".tmp", 0) == 0);
  CHECK(contains(msg, "check that the directory exists"));
  CHECK_FALSE(fs::exists(nowhere));
}
