// Tensor files (checkpoints, state dicts, integer models). Layout:
//   8 bytes  magic "QFORGE1\n"
//   8 bytes  little-endian length L of the JSON header
//   L bytes  JSON: {"metadata": {...}, "tensors": [{"name","dtype","shape","offset","bytes"}, ...]}
//   payload  raw little-endian tensor data at the given offsets
// Written atomically (Note [Atomic writes]). Reading checks every offset and size
// against the file, so a truncated or corrupt file is an error naming the file.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/tensor.h"

namespace qforge {

using TensorMap = std::map<std::string, Tensor>;

struct TensorFile {
  TensorMap tensors;
  nlohmann::json metadata;
};

void save_tensor_file(const std::string& path, const TensorMap& tensors, const nlohmann::json& metadata = {});
TensorFile load_tensor_file(const std::string& path);
// The tensors named "<prefix>…", with the prefix removed (a checkpoint's "model." part).
TensorMap tensors_under(const TensorMap& tensors, const std::string& prefix);

}  // namespace qforge
