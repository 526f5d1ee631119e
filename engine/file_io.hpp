// Pieces the file readers share (engine/npy.cpp, engine/tensor_file.cpp, engine/idx.cpp):
// reading a whole file into memory and counting a shape's elements without overflow. Each
// reader words its own errors, so these report failures and leave the wording to the caller.
#pragma once

#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sigmar {

// All of `path` in memory, or nullopt when the file cannot be opened (errno then says why).
// A read that stops part-way throws std::runtime_error(path + ": " + short_read).
inline std::optional<std::vector<uint8_t>> read_file_bytes(const std::string& path,
                                                           const std::string& short_read) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return std::nullopt;
  const std::streamoff size = in.tellg();
  std::vector<uint8_t> data(static_cast<size_t>(size));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(data.data()), size);
  if (in.gcount() != size) throw std::runtime_error(path + ": " + short_read);
  return data;
}

// Element count of a shape; false on a negative dimension or a count that could overflow
// once multiplied by an element size (up to 16 bytes).
inline bool element_count(const std::vector<int64_t>& shape, uint64_t* count) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(d))
      return false;
    n *= static_cast<uint64_t>(d);
  }
  *count = n;
  return true;
}

}  // namespace sigmar
