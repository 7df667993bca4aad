// Tensor files (checkpoints, state dicts, integer models). Layout, version 2:
//   8 bytes  magic "QFORGE2\n"
//   8 bytes  little-endian length L of the JSON header
//   4 bytes  little-endian CRC-32 (zlib) of the header
//   L bytes  JSON: {"metadata": {...}, "tensors": [{"name","dtype","shape","offset","bytes","crc32"}, ...]}
//   payload  raw little-endian tensor data at the given offsets, each with its CRC-32
// Written atomically (Note [Atomic writes]). Reading trusts nothing: the header's checksum,
// then every dtype, shape (non-negative, product bounded by the file), offset and size
// against the payload — without overflow — and every tensor's checksum, so a truncated,
// bit-flipped or hand-edited file is an error naming the file and the section.
// Version-1 files (QFORGE1, no checksums) are refused with a message saying so.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/tensor.h"

namespace qforge {

using TensorMap = std::map<std::string, Tensor>;

struct TensorFile {
  TensorMap tensors;
  nlohmann::json metadata;
};

void save_tensor_file(const std::string& path, const TensorMap& tensors, const nlohmann::json& metadata = {});
TensorFile load_tensor_file(const std::string& path);
// The same from bytes already in memory (`path` names them in messages); for fuzzing.
TensorFile parse_tensor_file(std::string_view bytes, const std::string& path);
// The tensors named "<prefix>…", with the prefix removed (a checkpoint's "model." part).
TensorMap tensors_under(const TensorMap& tensors, const std::string& prefix);

// zlib's CRC-32 of a byte range.
uint32_t crc32_of(const void* data, std::size_t size);

}  // namespace qforge
