// Small helpers the file-format tests share (test_npy, test_tensor_file, test_idx,
// test_kernels_tool): a scratch directory per test, whole-file reads and writes, and the
// message of an expected error.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace test_util {

using Bytes = std::vector<uint8_t>;

// <temp>/sigmar-test-<tag>-<pid>, emptied on entry and removed at scope end. The pid keeps
// two test runs apart; the tag (file prefix, then the case) keeps the tests of one run apart.
struct ScratchDir {
  std::filesystem::path dir;
  explicit ScratchDir(const std::string& tag) {
    dir = std::filesystem::temp_directory_path() /
          ("sigmar-test-" + tag + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~ScratchDir() {
    std::error_code ec;  // a failed clean-up must not throw from a destructor
    std::filesystem::remove_all(dir, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

// The whole file; empty when it cannot be opened (the caller's comparison then fails).
inline Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string read_text(const std::string& path) {
  const Bytes b = read_bytes(path);
  return std::string(b.begin(), b.end());
}

// Replaces the file with `b`; the test stops if the write fails.
inline void write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(out.good());
}

// What error_of returns when f finished without throwing; no real message reads like it.
inline const std::string kNoError = "<no error was thrown>";

// The message of the E that f throws, or kNoError. Any other exception propagates and fails
// the test, so a check on the message also checks the kind of error.
template <typename E = std::runtime_error, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return kNoError;
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace test_util
