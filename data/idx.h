// IDX files (the MNIST format, LeCun et al.): a big-endian header — two zero bytes, a
// type code (0x08 = uint8), the number of dimensions, then each extent as uint32 —
// followed by the values. Read plain or gzip-compressed (detected from the bytes).
// Only uint8 payloads: every IDX dataset qforge reads stores pixels and labels so.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qforge::data {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> values;  // row-major, product(dims) of them
};

// Throws qforge::Error naming the file and what is wrong: missing, bad magic, wrong
// type, truncated (fewer bytes than the header promises), or trailing bytes.
IdxArray read_idx(const std::string& path);

// Writes an uncompressed IDX file atomically (temporary file, then rename).
void write_idx(const std::string& path, const std::vector<int64_t>& dims, std::span<const uint8_t> values);

}  // namespace qforge::data
