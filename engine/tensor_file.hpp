// The checkpoint container (SPEC 7): named raw buffers plus a JSON value of metadata, laid out
// like safetensors so the files can be inspected with ordinary tools:
//
//   [8 bytes: N, little-endian u64] [N bytes: JSON header, space-padded] [data bytes]
//   header = { "__metadata__": <any JSON>,
//              "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end)}, ...}
//
// Offsets count from the first data byte; the entries tile the data exactly, in the order
// they were written. This file knows nothing of tensors or models: callers turn parameters,
// optimizer moments, BN statistics, loss state and RNG state into NamedBuffers and metadata.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace sigmar {

// dtype is one of "F32", "I32", "U8", "I64", "U64"; bytes are little-endian and row-major,
// bytes.size() == product(shape) * dtype size (an empty shape holds one element).
struct NamedBuffer {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Writes `path + ".tmp"`, fsyncs it, then renames it over `path`: a crash leaves either the
// old file or the new one under `path`, never a half-written one. Throws (and leaves `path`
// as it was) on an invalid buffer, a duplicate name or any I/O failure.
void write_tensor_file(const std::string& path, const std::vector<NamedBuffer>& buffers,
                       const nlohmann::json& metadata);

struct TensorFile {
  std::string path;         // where it was read from, for error messages
  nlohmann::json metadata;  // null when the file has none
  std::vector<NamedBuffer> buffers;  // in the order they were written

  bool has(const std::string& name) const;
  // Throws, naming the file and the missing entry, when there is no buffer called `name`.
  const NamedBuffer& get(const std::string& name) const;
};

// Reads and validates a whole file; anything malformed is a std::runtime_error that names the
// file, says it is not a valid sigmar checkpoint and what is wrong with it.
TensorFile read_tensor_file(const std::string& path);

// Bytes per element of a checkpoint dtype ("F32" → 4); throws on an unknown name.
size_t tensor_file_dtype_size(const std::string& dtype);

// The crash-safe write under both the checkpoint and the .npy writer: the parts go, in order,
// to `path + ".tmp"`, which is fsynced and renamed to `path` (then the directory is fsynced).
// On failure the temporary is removed, `path` is untouched, and the error names `path`, the
// failing step and `what` ("checkpoint", ".npy file").
void write_file_atomic(const std::string& path, const std::vector<std::string_view>& parts,
                       const std::string& what);

}  // namespace sigmar
