// IDX and CIFAR binary readers (see idx.hpp). Each file is read whole into memory, gunzipped
// on the way in when it starts with the gzip magic, and only then parsed, so every length
// check compares the header's claims against the real byte count.
#include "engine/idx.hpp"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "engine/file_io.hpp"

namespace sigmar {
namespace {

constexpr uint32_t kImagesMagic = 2051;  // 0x00000803: unsigned bytes, 3 dimensions
constexpr uint32_t kLabelsMagic = 2049;  // 0x00000801: unsigned bytes, 1 dimension
constexpr size_t kImagesHeader = 16;     // magic, count, rows, cols
constexpr size_t kLabelsHeader = 8;      // magic, count

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// The contents of a file, and whether they came out of gzip (errors then say so, because
// the byte counts they quote are of the decompressed data).
struct FileBytes {
  std::vector<uint8_t> data;
  bool gunzipped = false;
};

bool starts_with_gzip_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char head[2] = {0, 0};
  in.read(reinterpret_cast<char*>(head), 2);
  return in.gcount() == 2 && head[0] == 0x1f && head[1] == 0x8b;
}

std::vector<uint8_t> read_raw(const std::string& path) {
  auto data = read_file_bytes(path, "read error part-way through the file");
  if (!data) fail(path, std::string("cannot open file (") + std::strerror(errno) + ")");
  return std::move(*data);
}

std::vector<uint8_t> read_gzip(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");
  if (gz == nullptr)
    fail(path, std::string("cannot open gzip file (") + std::strerror(errno) + ")");
  gzbuffer(gz, 1 << 18);
  std::vector<uint8_t> data;
  constexpr size_t kChunk = 1 << 20;
  for (;;) {
    const size_t old = data.size();
    data.resize(old + kChunk);
    const int got = gzread(gz, data.data() + old, static_cast<unsigned>(kChunk));
    if (got < 0) {
      int code = 0;
      const std::string msg = gzerror(gz, &code);
      gzclose(gz);
      fail(path, "gzip data is damaged (" + msg + "); download the file again");
    }
    data.resize(old + static_cast<size_t>(got));
    if (got == 0) break;
  }
  // Older zlib reports a stream cut short only when the file is closed.
  if (gzclose(gz) != Z_OK) fail(path, "gzip data ends early (truncated .gz); download it again");
  return data;
}

FileBytes read_file(const std::string& path) {
  if (!std::filesystem::exists(path)) fail(path, "file not found");
  if (std::filesystem::is_directory(path)) fail(path, "is a directory, not a data file");
  FileBytes f;
  f.gunzipped = starts_with_gzip_magic(path);
  f.data = f.gunzipped ? read_gzip(path) : read_raw(path);
  return f;
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

uint32_t byteswap32(uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

const char* idx_kind(uint32_t magic) {
  return magic == kImagesMagic ? "images" : "labels";
}

// Says which of the usual mistakes gave a wrong magic: a header written little-endian, the
// other kind of IDX file, or something that is not IDX at all.
void check_magic(const std::string& path, uint32_t found, uint32_t expected) {
  if (found == expected) return;
  const std::string want = "expected magic " + std::to_string(expected) + " (" +
                           hex32(expected) + ") of an IDX " + idx_kind(expected) + " file";
  const std::string got = "magic " + std::to_string(found) + " (" + hex32(found) + ")";
  if (found == byteswap32(kImagesMagic) || found == byteswap32(kLabelsMagic))
    fail(path, got + " is a little-endian IDX header, but IDX headers are big-endian; " + want);
  if (found == kImagesMagic || found == kLabelsMagic)
    fail(path, got + " marks an IDX " + idx_kind(found) + " file, but " + want +
                   "; check which file was passed");
  fail(path, got + " is not IDX; " + want + "; replace it with the real file");
}

std::string gz_note(const FileBytes& f) { return f.gunzipped ? " (after gunzip)" : ""; }

// The body after an IDX header must be exactly `expected` bytes: fewer is a truncated file,
// more means the header's counts do not describe the file.
void check_body_length(const std::string& path, const FileBytes& f, size_t header,
                       uint64_t expected, const std::string& what, const std::string& why) {
  const uint64_t found = f.data.size() - header;
  if (found < expected)
    fail(path, "expected " + std::to_string(expected) + " bytes of " + what + " (" + why +
                   "), found " + std::to_string(found) + gz_note(f) + "; the file is truncated");
  if (found > expected)
    fail(path, std::to_string(found - expected) + " bytes of trailing data after " +
                   std::to_string(expected) + " bytes of " + what + " (" + why + ")" +
                   gz_note(f) + "; the header does not describe this file");
}

void check_num_classes(const std::string& path, int num_classes) {
  if (num_classes < 1)
    fail(path, "num_classes is " + std::to_string(num_classes) + "; it must be at least 1");
}

// SPEC 1: a label outside [0, C) is an error before anything indexes by it.
void check_labels(const std::string& path, const std::vector<uint8_t>& labels, int num_classes,
                  const std::string& kind) {
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= num_classes)
      fail(path, kind + " byte " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                     " is out of range for " + std::to_string(num_classes) + " classes");
}

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  const FileBytes f = read_file(path);
  // The magic first: a labels file is shorter than an images header, and saying "this is a
  // labels file" helps more than "too short".
  if (f.data.size() >= 4) check_magic(path, read_be32(f.data.data()), kImagesMagic);
  if (f.data.size() < kImagesHeader)
    fail(path, "file is " + std::to_string(f.data.size()) + " bytes" + gz_note(f) +
                   ", too short for a 16-byte IDX images header; the file is truncated, "
                   "replace it");
  const uint8_t* p = f.data.data();

  const uint64_t count = read_be32(p + 4), rows = read_be32(p + 8), cols = read_be32(p + 12);
  if (rows == 0 || cols == 0)
    fail(path, "header gives images of " + std::to_string(rows) + "x" + std::to_string(cols) +
                   " pixels; an image needs at least one row and one column");
  // rows*cols < 2^64 since each is < 2^32; guard the product with count before forming it.
  const uint64_t per_image = rows * cols;
  if (count > std::numeric_limits<uint64_t>::max() / per_image)
    fail(path, "header's sizes overflow 64 bits; the header is damaged");
  const std::string why = std::to_string(count) + " images of " + std::to_string(rows) + "x" +
                          std::to_string(cols);
  check_body_length(path, f, kImagesHeader, count * per_image, "pixels", why);

  IdxImages out;
  out.count = static_cast<int64_t>(count);
  out.rows = static_cast<int64_t>(rows);
  out.cols = static_cast<int64_t>(cols);
  out.pixels.assign(f.data.begin() + kImagesHeader, f.data.end());
  return out;
}

std::vector<uint8_t> read_idx_labels(const std::string& path, int num_classes) {
  check_num_classes(path, num_classes);
  const FileBytes f = read_file(path);
  if (f.data.size() >= 4) check_magic(path, read_be32(f.data.data()), kLabelsMagic);
  if (f.data.size() < kLabelsHeader)
    fail(path, "file is " + std::to_string(f.data.size()) + " bytes" + gz_note(f) +
                   ", too short for an 8-byte IDX labels header; the file is truncated, "
                   "replace it");

  const uint64_t count = read_be32(f.data.data() + 4);
  check_body_length(path, f, kLabelsHeader, count, "labels", std::to_string(count) + " labels");
  std::vector<uint8_t> labels(f.data.begin() + kLabelsHeader, f.data.end());
  check_labels(path, labels, num_classes, "label");
  return labels;
}

namespace {

const char* kDataHint =
    "install Debian's dataset-fashion-mnist (it puts the files in "
    "/usr/share/datasets/fashion-mnist) or pass --data-dir";

// The raw file wins over the .gz when both are present: it is what the user unpacked.
std::string find_idx_file(const std::string& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  for (const char* ext : {"", ".gz"}) {
    const fs::path p = fs::path(dir) / (stem + ext);
    if (fs::is_regular_file(p)) return p.string();
  }
  fail((std::filesystem::path(dir) / stem).string() + "[.gz]",
       std::string("not found; ") + kDataHint);
}

}  // namespace

IdxDataset load_idx_split(const std::string& dir, const std::string& split, int num_classes) {
  if (split != "train" && split != "t10k")
    fail(dir, "unknown IDX split '" + split + "'; use \"train\" or \"t10k\"");
  if (!std::filesystem::is_directory(dir))
    fail(dir, std::string("data directory not found; ") + kDataHint);

  const std::string images_path = find_idx_file(dir, split + "-images-idx3-ubyte");
  const std::string labels_path = find_idx_file(dir, split + "-labels-idx1-ubyte");
  IdxDataset ds;
  ds.images = read_idx_images(images_path);
  ds.labels = read_idx_labels(labels_path, num_classes);
  if (static_cast<int64_t>(ds.labels.size()) != ds.images.count)
    fail(labels_path, "holds " + std::to_string(ds.labels.size()) + " labels, but " +
                          images_path + " holds " + std::to_string(ds.images.count) +
                          " images; the two files must come from the same split");
  return ds;
}

CifarData read_cifar_bin(const std::string& path, bool cifar100) {
  constexpr size_t kPixels = 3 * 32 * 32;
  const size_t label_bytes = cifar100 ? 2 : 1;
  const size_t record = label_bytes + kPixels;
  const char* name = cifar100 ? "CIFAR-100" : "CIFAR-10";

  const FileBytes f = read_file(path);
  const size_t size = f.data.size();
  if (size == 0) fail(path, std::string("file is empty; expected ") + name + " records");
  if (size % record != 0)
    fail(path, std::to_string(size) + " bytes" + gz_note(f) + " is not a whole number of " +
                   std::to_string(record) + "-byte " + name + " records (" +
                   std::to_string(size / record) + " records and " +
                   std::to_string(size % record) +
                   " bytes over); the file is truncated or of the other CIFAR kind");

  CifarData out;
  out.count = static_cast<int64_t>(size / record);
  out.pixels.resize(out.count * kPixels);
  out.labels.resize(out.count);
  if (cifar100) out.coarse_labels.resize(out.count);
  // Each record: [coarse] label, then the three colour planes, copied as they are.
  for (int64_t i = 0; i < out.count; ++i) {
    const uint8_t* rec = f.data.data() + i * record;
    if (cifar100) out.coarse_labels[i] = rec[0];
    out.labels[i] = rec[label_bytes - 1];
    std::memcpy(out.pixels.data() + i * kPixels, rec + label_bytes, kPixels);
  }
  if (cifar100) {
    check_labels(path, out.coarse_labels, 20, "coarse label");
    check_labels(path, out.labels, 100, "fine label");
  } else {
    check_labels(path, out.labels, 10, "label");
  }
  return out;
}

}  // namespace sigmar
