#include "data/idx.h"

#include <zlib.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "core/file_io.h"

namespace qforge::data {

namespace {
struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};

bool is_gzip(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[2] = {};
  return in.read(magic, 2) && static_cast<uint8_t>(magic[0]) == 0x1f &&
         static_cast<uint8_t>(magic[1]) == 0x8b;
}

// Reads exactly `count` bytes or reports how many arrived. A damaged compressed stream
// (bad data, a CRC-32 mismatch at its end, a cut) is an error here, whatever was read.
int64_t read_bytes(gzFile file, uint8_t* out, int64_t count, const std::string& path) {
  int64_t done = 0;
  while (done < count) {
    unsigned chunk = static_cast<unsigned>(std::min<int64_t>(count - done, 1 << 30));
    int got = gzread(file, out + done, chunk);
    if (got <= 0) break;
    done += got;
  }
  int error_code = 0;
  const char* zlib_message = gzerror(file, &error_code);
  QF_CHECK(error_code == Z_OK, path, ": corrupt or truncated compressed data (", zlib_message, ")");
  return done;
}
}  // namespace

IdxArray read_idx(const std::string& path) {
  QF_CHECK(std::filesystem::is_regular_file(path), path, ": IDX file not found");
  std::unique_ptr<gzFile_s, GzCloser> file(gzopen(path.c_str(), "rb"));  // reads plain files too
  QF_CHECK(file != nullptr, path, ": cannot open");
  std::array<uint8_t, 4> magic{};
  QF_CHECK(read_bytes(file.get(), magic.data(), 4, path) == 4, path,
           ": truncated IDX header (file shorter than 4 bytes)");
  QF_CHECK(magic[0] == 0 && magic[1] == 0, path, ": not an IDX file (magic bytes ", int(magic[0]), " ",
           int(magic[1]), ", expected 0 0)");
  QF_CHECK(magic[2] == 0x08, path, ": IDX type code 0x", std::hex, int(magic[2]), ", expected 0x08 (uint8)");
  const int rank = magic[3];
  QF_CHECK(rank >= 1 && rank <= 4, path, ": IDX header has ", rank, " dimensions, expected 1 to 4");
  IdxArray array;
  int64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    std::array<uint8_t, 4> extent{};
    QF_CHECK(read_bytes(file.get(), extent.data(), 4, path) == 4, path, ": truncated IDX header (dimension ",
             i, ")");
    int64_t value = (int64_t(extent[0]) << 24) | (extent[1] << 16) | (extent[2] << 8) | extent[3];
    QF_CHECK(value > 0 && value < (1 << 28), path, ": implausible IDX extent ", value, " in dimension ", i);
    array.dims.push_back(value);
    // Extents below 2^28 each: the product is checked before it can overflow.
    QF_CHECK(count <= (int64_t{1} << 34) / value, path,
             ": the IDX header's extents multiply past 2^34 values");
    count *= value;
  }
  // What the header claims is bounded by the file's real size before anything is
  // allocated: a plain file holds its values; deflate expands at most 1032:1.
  const int64_t file_size = static_cast<int64_t>(std::filesystem::file_size(path));
  const int64_t limit = is_gzip(path) ? file_size * 1032 + 1024 : file_size;
  QF_CHECK(count <= limit, path, ": the IDX header claims ", count, " values, more than a file of ",
           file_size, " bytes can hold (corrupt header)");
  array.values.resize(count);
  const int64_t got = read_bytes(file.get(), array.values.data(), count, path);
  uint8_t extra = 0;
  const int64_t trailing = read_bytes(file.get(), &extra, 1, path);  // also makes zlib check the stream's CRC
  QF_CHECK(got == count, path, ": truncated: the header promises ", count, " values, the file holds ", got);
  QF_CHECK(trailing == 0, path, ": ", count, " values expected, but the file holds more (trailing bytes)");
  return array;
}

void write_idx(const std::string& path, const std::vector<int64_t>& dims, std::span<const uint8_t> values) {
  std::string bytes{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  for (int64_t extent : dims)
    for (int shift : {24, 16, 8, 0}) bytes.push_back(static_cast<char>((extent >> shift) & 0xff));
  bytes.append(reinterpret_cast<const char*>(values.data()), values.size());
  write_file_atomically(path, bytes);
}

}  // namespace qforge::data
