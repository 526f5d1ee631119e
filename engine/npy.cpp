// .npy reading and writing (see npy.hpp). The header is a Python dict literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// parsed here by a small recursive-descent reader that knows exactly those three keys.
// Writes lay the header out as NumPy's np.save does, so the files are byte-identical.
#include "engine/npy.hpp"

#include <bit>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string_view>

#include "engine/file_io.hpp"
#include "engine/tensor_file.hpp"  // write_file_atomic

namespace sigmar {

// Element bytes are copied straight into and out of host integers and floats.
static_assert(std::endian::native == std::endian::little,
              "npy.cpp assumes a little-endian host; add byte swapping to port it");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;            // np.save pads the header to this boundary
constexpr size_t kGrowthDigits = 21;     // np.save leaves room for the first axis to grow

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

struct DtypeInfo {
  const char* name;   // ours
  const char* descr;  // NumPy's, as written
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"f32", "<f4", 4}, {"f64", "<f8", 8}, {"u8", "|u1", 1}, {"i32", "<i4", 4}, {"i64", "<i8", 8},
};

const DtypeInfo* find_by_name(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

// Maps a NumPy descr to ours; a one-byte type has no byte order, so '<u1' is '|u1'.
const DtypeInfo* find_by_descr(const std::string& descr) {
  const std::string d = descr == "<u1" ? "|u1" : descr;
  for (const auto& t : kDtypes)
    if (d == t.descr) return &t;
  return nullptr;
}

// ---- the header dict -------------------------------------------------------------------

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    while (!eat('}')) {
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        if (peek() != '\'' && peek() != '"')
          bad("descr is not a plain dtype string (structured arrays are not supported)");
        h.descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        have_order = true;
      } else if (key == "shape") {
        h.shape = tuple();
        have_shape = true;
      } else {
        bad("unexpected key '" + key + "'");
      }
      if (!eat(',')) {
        expect('}');
        break;
      }
    }
    if (!have_descr || !have_order || !have_shape)
      bad("a key is missing (need 'descr', 'fortran_order' and 'shape')");
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail(path_, "damaged .npy header: " + what + " in " + quoted());
  }

  std::string quoted() const {
    std::string t = s_;
    while (!t.empty() && (t.back() == ' ' || t.back() == '\n')) t.pop_back();
    return "\"" + t + "\"";
  }

  char peek() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n')) ++i_;
    return i_ < s_.size() ? s_[i_] : '\0';
  }

  bool eat(char c) {
    if (peek() != c) return false;
    ++i_;
    return true;
  }

  void expect(char c) {
    if (!eat(c)) bad(std::string("expected '") + c + "' at column " + std::to_string(i_));
  }

  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string at column " + std::to_string(i_));
    const size_t end = s_.find(q, i_ + 1);
    if (end == std::string::npos) bad("unterminated string");
    std::string out = s_.substr(i_ + 1, end - i_ - 1);
    i_ = end + 1;
    return out;
  }

  bool boolean() {
    peek();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}}) {
      const size_t n = std::strlen(word);
      if (s_.compare(i_, n, word) == 0) {
        i_ += n;
        return value;
      }
    }
    bad("fortran_order is neither True nor False");
  }

  std::vector<int64_t> tuple() {
    std::vector<int64_t> dims;
    expect('(');
    while (!eat(')')) {
      if (peek() < '0' || peek() > '9') bad("a shape entry is not a non-negative integer");
      int64_t v = 0;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) bad("a shape entry is too big");
        v = v * 10 + (s_[i_++] - '0');
      }
      if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 wrote long integers as 3L
      dims.push_back(v);
      if (!eat(',')) {
        expect(')');
        break;
      }
    }
    return dims;
  }

  const std::string& s_;
  const std::string& path_;
  size_t i_ = 0;
};

std::string shape_repr(const std::vector<int64_t>& shape) {
  // Python's repr of a tuple: (), (3,), (2, 3).
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

uint32_t read_le(const uint8_t* p, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}

std::vector<uint8_t> read_whole(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    fail(path, std::filesystem::exists(path) ? "not a regular file" : "file not found");
  auto data = read_file_bytes(path, "read error part-way through the file");
  if (!data) fail(path, "cannot open file for reading");
  return std::move(*data);
}

}  // namespace

size_t npy_itemsize(const std::string& dtype) {
  const DtypeInfo* d = find_by_name(dtype);
  if (d == nullptr)
    throw std::runtime_error("npy: unknown dtype '" + dtype +
                             "'; use one of f32, f64, u8, i32, i64");
  return d->size;
}

NpyArray read_npy(const std::string& path) {
  const std::vector<uint8_t> file = read_whole(path);

  // Preamble: magic, version, then the header length (2 bytes in v1, 4 bytes in v2 and v3).
  if (file.size() < kMagicLen + 2 || std::memcmp(file.data(), kMagic, kMagicLen) != 0)
    fail(path, "not a .npy file (it does not start with \\x93NUMPY); save arrays with np.save");
  const int major = file[6], minor = file[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    fail(path, ".npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " is not supported (1.0, 2.0 and 3.0 are)");
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLen + 2 + len_bytes;
  if (file.size() < prefix) fail(path, "file ends inside the .npy preamble (truncated)");
  const size_t header_len = read_le(file.data() + kMagicLen + 2, len_bytes);
  if (file.size() < prefix + header_len)
    fail(path, "header of " + std::to_string(header_len) + " bytes runs past the end of the " +
                   std::to_string(file.size()) + "-byte file (truncated)");
  const std::string text(reinterpret_cast<const char*>(file.data()) + prefix, header_len);
  const NpyHeader h = HeaderParser(text, path).parse();

  // What the header says must be something we read, laid out as we read it.
  if (h.fortran_order)
    fail(path, "array is in Fortran order; save np.ascontiguousarray(a) instead");
  const DtypeInfo* dt = find_by_descr(h.descr);
  if (dt == nullptr && !h.descr.empty() && h.descr[0] == '>')
    fail(path, "dtype '" + h.descr + "' is big-endian; save a.astype(a.dtype.newbyteorder"
                                     "('<')) instead");
  if (dt == nullptr)
    fail(path, "dtype '" + h.descr + "' is not supported (expected one of <f4, <f8, |u1, "
                                     "<i4, <i8)");
  uint64_t count = 0;
  if (!element_count(h.shape, &count))
    fail(path, "shape " + shape_repr(h.shape) + " is too large");

  // The body must be exactly the elements: short is a truncated file, long is not one array.
  const uint64_t expected = count * dt->size;
  const uint64_t found = file.size() - prefix - header_len;
  if (found != expected)
    fail(path, "expected " + std::to_string(expected) + " bytes of data for shape " +
                   shape_repr(h.shape) + " " + h.descr + ", found " + std::to_string(found) +
                   (found < expected ? " (truncated)" : " (trailing bytes after the array)"));

  NpyArray out;
  out.dtype = dt->name;
  out.shape = h.shape;
  out.bytes.assign(file.begin() + static_cast<std::ptrdiff_t>(prefix + header_len), file.end());
  return out;
}

void write_npy(const std::string& path, const NpyArray& array) {
  const DtypeInfo* dt = find_by_name(array.dtype);
  if (dt == nullptr)
    fail(path, "cannot write dtype '" + array.dtype + "'; use one of f32, f64, u8, i32, i64");
  uint64_t count = 0;
  if (!element_count(array.shape, &count))
    fail(path, "cannot write shape " + shape_repr(array.shape) + " (negative or too large)");
  if (array.bytes.size() != count * dt->size)
    fail(path, "cannot write: shape " + shape_repr(array.shape) + " of " + array.dtype +
                   " needs " + std::to_string(count * dt->size) + " bytes, the array holds " +
                   std::to_string(array.bytes.size()));

  // The dict, room for the first axis to grow, then spaces and '\n' up to a 64-byte boundary.
  std::string header = std::string("{'descr': '") + dt->descr +
                       "', 'fortran_order': False, 'shape': " + shape_repr(array.shape) + ", }";
  if (!array.shape.empty())
    header.append(kGrowthDigits - std::to_string(array.shape[0]).size(), ' ');
  int major = 1;
  size_t len_bytes = 2;
  size_t total = kMagicLen + 2 + len_bytes + header.size() + 1;
  size_t padded = (total + kAlign - 1) / kAlign * kAlign;
  if (padded - kMagicLen - 2 - len_bytes > 0xffff) {  // too long for v1's 16-bit length
    major = 2;
    len_bytes = 4;
    total = kMagicLen + 2 + len_bytes + header.size() + 1;
    padded = (total + kAlign - 1) / kAlign * kAlign;
  }
  header.append(padded - total, ' ');
  header += '\n';

  std::string preamble(kMagic, kMagicLen);
  preamble += static_cast<char>(major);
  preamble += '\0';
  for (size_t i = 0; i < len_bytes; ++i)
    preamble += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  const std::string_view body(reinterpret_cast<const char*>(array.bytes.data()),
                              array.bytes.size());
  write_file_atomic(path, {preamble, header, body}, ".npy file");
}

namespace {

// NpyArrays can be built by hand, so the converters check that bytes and shape agree.
void check_consistent(const NpyArray& a, const char* fn) {
  uint64_t count = 0;
  const DtypeInfo* dt = find_by_name(a.dtype);
  if (dt == nullptr || !element_count(a.shape, &count) || a.bytes.size() != count * dt->size)
    throw std::runtime_error(std::string(fn) + ": the array's " + std::to_string(a.bytes.size()) +
                             " bytes do not match dtype '" + a.dtype + "' and shape " +
                             shape_repr(a.shape));
}

// Reads element i of a little-endian array of T.
template <typename T>
T element(const NpyArray& a, size_t i) {
  T v;
  std::memcpy(&v, a.bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}

}  // namespace

std::vector<float> npy_as_f32(const NpyArray& array) {
  check_consistent(array, "npy_as_f32");
  if (array.dtype == "f32") {
    std::vector<float> out(array.bytes.size() / 4);
    for (size_t i = 0; i < out.size(); ++i) out[i] = element<float>(array, i);
    return out;
  }
  if (array.dtype == "f64") {
    std::vector<float> out(array.bytes.size() / 8);
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(element<double>(array, i));
    return out;
  }
  throw std::runtime_error("npy_as_f32: the array holds " + array.dtype +
                           " integers, not floats; save it with a.astype('float32')");
}

std::vector<int32_t> npy_as_labels(const NpyArray& array) {
  check_consistent(array, "npy_as_labels");
  const size_t n = array.bytes.size() / npy_itemsize(array.dtype);
  // SPEC 1: labels are class indices; what does not fit an int32 class index is refused here,
  // and the loss checks the upper bound C.
  auto checked = [](int64_t v, size_t i) {
    if (v < 0 || v > std::numeric_limits<int32_t>::max())
      throw std::runtime_error("npy_as_labels: label " + std::to_string(v) + " at index " +
                               std::to_string(i) + " is not a class index in [0, 2^31)");
    return static_cast<int32_t>(v);
  };
  std::vector<int32_t> out(n);
  if (array.dtype == "u8") {
    for (size_t i = 0; i < n; ++i) out[i] = array.bytes[i];
  } else if (array.dtype == "i32") {
    for (size_t i = 0; i < n; ++i) out[i] = checked(element<int32_t>(array, i), i);
  } else if (array.dtype == "i64") {
    for (size_t i = 0; i < n; ++i) out[i] = checked(element<int64_t>(array, i), i);
  } else {
    throw std::runtime_error("npy_as_labels: the array holds " + array.dtype +
                             " values; labels must be u8, i32 or i64 integers");
  }
  return out;
}

namespace {

template <typename T>
NpyArray make_array(const char* dtype, const std::vector<int64_t>& shape,
                    const std::vector<T>& values) {
  uint64_t count = 0;
  if (!element_count(shape, &count) || count != values.size())
    throw std::runtime_error(std::string("npy_") + dtype + ": shape " + shape_repr(shape) +
                             " does not hold " + std::to_string(values.size()) + " values");
  NpyArray a{dtype, shape, std::vector<uint8_t>(values.size() * sizeof(T))};
  if (!values.empty()) std::memcpy(a.bytes.data(), values.data(), a.bytes.size());
  return a;
}

}  // namespace

NpyArray npy_f32(const std::vector<int64_t>& shape, const std::vector<float>& values) {
  return make_array("f32", shape, values);
}

NpyArray npy_i32(const std::vector<int64_t>& shape, const std::vector<int32_t>& values) {
  return make_array("i32", shape, values);
}

}  // namespace sigmar
