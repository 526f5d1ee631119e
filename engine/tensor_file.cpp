// Checkpoint container (see tensor_file.hpp): the crash-safe writer and a reader that checks
// every claim the header makes against the file before handing out a single byte.
#include "engine/tensor_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>

#include "engine/file_io.hpp"

namespace sigmar {
namespace {

using json = nlohmann::json;

constexpr const char* kMetaKey = "__metadata__";

struct DtypeSize {
  const char* name;
  size_t size;
};
constexpr DtypeSize kDtypes[] = {{"F32", 4}, {"I32", 4}, {"U8", 1}, {"I64", 8}, {"U64", 8}};

size_t dtype_size_or_zero(const std::string& dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.name) return d.size;
  return 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

[[noreturn]] void invalid(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": not a valid sigmar checkpoint: " + what +
                           "; resume from another checkpoint-epochNNN.sgm of the run");
}

[[noreturn]] void io_error(const std::string& path, const std::string& what,
                           const std::string& step, int err) {
  throw std::runtime_error(path + ": cannot write " + what + ": " + step + " failed (" +
                           std::strerror(err) +
                           "); check that the directory exists, is writable and has space");
}

// Writes all of `data`, resuming after short writes and signals.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::vector<uint8_t> read_whole(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    throw std::runtime_error(path + ": cannot read checkpoint: " +
                             (std::filesystem::exists(path) ? "not a regular file"
                                                            : "file not found") +
                             "; check the path");
  auto data = read_file_bytes(path, "read error inside the checkpoint");
  if (!data) throw std::runtime_error(path + ": cannot open checkpoint for reading");
  return std::move(*data);
}

// One header entry, checked: known dtype, a shape of non-negative integers, offsets
// [begin, end) with end - begin == elements × dtype size.
NamedBuffer parse_entry(const std::string& path, const std::string& name, const json& e,
                        uint64_t* begin, uint64_t* end) {
  const std::string where = "entry '" + name + "'";
  if (!e.is_object()) invalid(path, where + " is not a JSON object");
  NamedBuffer b;
  b.name = name;
  if (!e.contains("dtype") || !e["dtype"].is_string())
    invalid(path, where + " has no dtype string");
  b.dtype = e["dtype"].get<std::string>();
  const size_t elem = dtype_size_or_zero(b.dtype);
  if (elem == 0) invalid(path, where + " has unknown dtype '" + b.dtype + "'");
  if (!e.contains("shape") || !e["shape"].is_array())
    invalid(path, where + " has no shape array");
  for (const json& d : e["shape"]) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
      invalid(path, where + " has a shape entry that is not a non-negative integer");
    b.shape.push_back(d.get<int64_t>());
  }
  const json* off = e.contains("data_offsets") ? &e["data_offsets"] : nullptr;
  if (off == nullptr || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    invalid(path, where + " has no data_offsets pair [begin, end)");
  *begin = (*off)[0].get<uint64_t>();
  *end = (*off)[1].get<uint64_t>();
  if (*end < *begin)
    invalid(path, where + " has data_offsets [" + std::to_string(*begin) + ", " +
                      std::to_string(*end) + ") that run backwards");
  uint64_t count = 0;
  if (!element_count(b.shape, &count)) invalid(path, where + " has a shape too large to hold");
  if (*end - *begin != count * elem)
    invalid(path, where + " spans " + std::to_string(*end - *begin) + " bytes, but shape " +
                      shape_str(b.shape) + " of " + b.dtype + " needs " +
                      std::to_string(count * elem));
  return b;
}

}  // namespace

size_t tensor_file_dtype_size(const std::string& dtype) {
  const size_t s = dtype_size_or_zero(dtype);
  if (s == 0)
    throw std::runtime_error("tensor file: unknown dtype '" + dtype +
                             "'; use one of F32, I32, U8, I64, U64");
  return s;
}

void write_file_atomic(const std::string& path, const std::vector<std::string_view>& parts,
                       const std::string& what) {
  const std::string tmp = path + ".tmp";
  // A temporary left by a crashed run is stale; removing it first and creating exclusively
  // also means we never write through a link someone left under that name.
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) io_error(path, what, "removing " + tmp, errno);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) io_error(path, what, "creating " + tmp, errno);

  auto abandon = [&](const std::string& step) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    io_error(path, what, step, err);
  };
  for (std::string_view part : parts)
    if (!write_all(fd, part)) abandon("writing " + tmp);
  // The data must be on disk before the rename makes it visible under the final name.
  if (::fsync(fd) != 0) abandon("fsync of " + tmp);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    io_error(path, what, "closing " + tmp, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    io_error(path, what, "renaming " + tmp + " to " + path, err);
  }
  // Make the rename itself durable; a directory that cannot be opened only loses durability.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_tensor_file(const std::string& path, const std::vector<NamedBuffer>& buffers,
                       const nlohmann::json& metadata) {
  // Check every buffer before touching the disk, so a bad call leaves nothing behind.
  json header = json::object();
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const NamedBuffer& b : buffers) {
    const std::string where = path + ": cannot write checkpoint entry '" + b.name + "': ";
    if (b.name.empty() || b.name == kMetaKey)
      throw std::runtime_error(where + "the name is empty or reserved");
    if (!names.insert(b.name).second) throw std::runtime_error(where + "the name is repeated");
    const size_t elem = dtype_size_or_zero(b.dtype);
    if (elem == 0)
      throw std::runtime_error(where + "unknown dtype '" + b.dtype +
                               "'; use one of F32, I32, U8, I64, U64");
    uint64_t count = 0;
    if (!element_count(b.shape, &count) || count * elem != b.bytes.size())
      throw std::runtime_error(where + "shape " + shape_str(b.shape) + " of " + b.dtype +
                               " does not match its " + std::to_string(b.bytes.size()) +
                               " bytes");
    header[b.name] = {{"dtype", b.dtype},
                      {"shape", b.shape},
                      {"data_offsets", {offset, offset + b.bytes.size()}}};
    offset += b.bytes.size();
  }
  header[kMetaKey] = metadata;

  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": cannot write checkpoint: metadata cannot be stored as "
                             "JSON (" + std::string(e.what()) + ")");
  }
  // Pad with spaces (still valid JSON) so the data starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((uint64_t(text.size()) >> (8 * i)) & 0xff);

  std::vector<std::string_view> parts = {len, text};
  for (const NamedBuffer& b : buffers)
    parts.emplace_back(reinterpret_cast<const char*>(b.bytes.data()), b.bytes.size());
  write_file_atomic(path, parts, "checkpoint");
}

TensorFile read_tensor_file(const std::string& path) {
  const std::vector<uint8_t> file = read_whole(path);
  if (file.size() < 8)
    invalid(path, "the file is " + std::to_string(file.size()) +
                      " bytes, too short to hold the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= uint64_t(file[i]) << (8 * i);
  if (header_len > file.size() - 8)
    invalid(path, "the header length " + std::to_string(header_len) +
                      " runs past the end of the " + std::to_string(file.size()) +
                      "-byte file (truncated or damaged)");

  json header;
  try {
    const auto text = file.begin() + 8;
    header = json::parse(text, text + static_cast<std::ptrdiff_t>(header_len));
  } catch (const json::parse_error& e) {
    invalid(path, std::string("the header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) invalid(path, "the header is not a JSON object");

  TensorFile tf;
  tf.path = path;
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetaKey) {
      tf.metadata = it.value();
      continue;
    }
    Span s{0, 0, tf.buffers.size()};
    tf.buffers.push_back(parse_entry(path, it.key(), it.value(), &s.begin, &s.end));
    spans.push_back(s);
  }

  // The entries must tile the data exactly: no overlap, no gap, nothing missing at the end.
  const uint64_t data_size = file.size() - 8 - header_len;
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Span& s : spans) {
    const std::string& name = tf.buffers[s.index].name;
    if (s.begin < cursor)
      invalid(path, "entry '" + name + "' overlaps the entry before it (offset " +
                        std::to_string(s.begin) + " < " + std::to_string(cursor) + ")");
    if (s.begin > cursor)
      invalid(path, "a gap of " + std::to_string(s.begin - cursor) + " bytes before entry '" +
                        name + "'");
    if (s.end > data_size)
      invalid(path, "entry '" + name + "' ends at data byte " + std::to_string(s.end) +
                        ", but the file holds only " + std::to_string(data_size) +
                        " data bytes (truncated)");
    cursor = s.end;
  }
  if (cursor != data_size)
    invalid(path, std::to_string(data_size - cursor) + " bytes of data after the last entry");

  // Copy out the bytes, in file order (the order they were written).
  const uint8_t* data = file.data() + 8 + header_len;
  std::vector<NamedBuffer> ordered;
  ordered.reserve(spans.size());
  for (const Span& s : spans) {
    NamedBuffer& b = tf.buffers[s.index];
    b.bytes.assign(data + s.begin, data + s.end);
    ordered.push_back(std::move(b));
  }
  tf.buffers = std::move(ordered);
  return tf;
}

bool TensorFile::has(const std::string& name) const {
  return std::any_of(buffers.begin(), buffers.end(),
                     [&](const NamedBuffer& b) { return b.name == name; });
}

const NamedBuffer& TensorFile::get(const std::string& name) const {
  for (const NamedBuffer& b : buffers)
    if (b.name == name) return b;
  std::string held;
  for (size_t i = 0; i < buffers.size() && i < 8; ++i) held += (i ? ", " : "") + buffers[i].name;
  if (buffers.size() > 8) held += ", ...";
  throw std::runtime_error(path + ": checkpoint has no entry '" + name + "' (it holds " +
                           std::to_string(buffers.size()) + " entries: " + held +
                           "); was it written by another model or an older sigmar?");
}

}  // namespace sigmar
