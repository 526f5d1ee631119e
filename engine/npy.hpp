// NumPy's .npy format (versions 1.0, 2.0 and 3.0), read and written without the Tensor class:
// the way reference values, features and labels move between sigmar and Python.
//
// Only what the engine uses is accepted: little-endian float32, float64, uint8, int32, int64
// in C order. Anything else (big-endian, Fortran order, other dtypes, a damaged header, a
// short body) is a std::runtime_error that names the file and what was found in it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sigmar {

// dtype is one of "f32", "f64", "u8", "i32", "i64"; bytes are little-endian, row-major, and
// bytes.size() == product(shape) * itemsize (an empty shape is a scalar: one element).
struct NpyArray {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

NpyArray read_npy(const std::string& path);

// Written to `path + ".tmp"`, flushed, then renamed, so `path` is never half-written.
void write_npy(const std::string& path, const NpyArray& array);

// f32 as is, f64 rounded to the nearest float; integer arrays are refused (say what they hold).
std::vector<float> npy_as_f32(const NpyArray& array);

// Class labels from u8, i32 or i64; each must lie in [0, 2^31).
std::vector<int32_t> npy_as_labels(const NpyArray& array);

// Builders; values.size() must equal the product of shape.
NpyArray npy_f32(const std::vector<int64_t>& shape, const std::vector<float>& values);
NpyArray npy_i32(const std::vector<int64_t>& shape, const std::vector<int32_t>& values);

// Bytes per element of an NpyArray dtype name ("f32" → 4); throws on an unknown name.
size_t npy_itemsize(const std::string& dtype);

}  // namespace sigmar
