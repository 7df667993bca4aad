#include "core/serialize.h"

#include <cstring>

#include "core/file_io.h"

namespace qforge {

namespace {
constexpr char kMagic[9] = "QFORGE1\n";

DType parse_dtype(const std::string& name, const std::string& path) {
  for (DType dtype : {DType::f32, DType::s8, DType::u8, DType::s32})
    if (name == dtype_name(dtype)) return dtype;
  QF_FAIL(path, ": unknown dtype \"", name, "\"");
}
}  // namespace

void save_tensor_file(const std::string& path, const TensorMap& tensors, const nlohmann::json& metadata) {
  nlohmann::json entries = nlohmann::json::array();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    uint64_t bytes = tensor.numel() * dtype_size(tensor.dtype());
    entries.push_back({{"name", name},
                       {"dtype", dtype_name(tensor.dtype())},
                       {"shape", std::vector<int64_t>(tensor.shape())},
                       {"offset", offset},
                       {"bytes", bytes}});
    offset += bytes;
  }
  std::string header = nlohmann::json{
      {"metadata", metadata.is_null() ? nlohmann::json::object() : metadata},
      {"tensors", entries}}.dump();
  std::string file(kMagic, 8);
  uint64_t header_length = header.size();
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<char>((header_length >> (8 * i)) & 0xff));
  file += header;
  file.reserve(file.size() + offset);
  for (const auto& [name, tensor] : tensors)
    file.append(reinterpret_cast<const char*>(tensor.bytes()), tensor.size_bytes());
  write_file_atomically(path, file);
}

TensorFile load_tensor_file(const std::string& path) {
  std::string file = read_file(path);
  QF_CHECK(file.size() >= 16 && std::memcmp(file.data(), kMagic, 8) == 0, path,
           ": not a qforge tensor file (bad magic)");
  uint64_t header_length = 0;
  for (int i = 0; i < 8; ++i)
    header_length |= static_cast<uint64_t>(static_cast<uint8_t>(file[8 + i])) << (8 * i);
  QF_CHECK(header_length <= file.size() - 16, path, ": truncated (header of ", header_length,
           " bytes, file of ", file.size(), ")");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file.substr(16, header_length));
  } catch (const nlohmann::json::exception& error) {
    QF_FAIL(path, ": corrupt header: ", error.what());
  }
  const uint64_t payload_start = 16 + header_length, payload_size = file.size() - payload_start;
  TensorFile result;
  result.metadata = header.value("metadata", nlohmann::json::object());
  try {
    for (const auto& entry : header.at("tensors")) {
      const std::string name = entry.at("name");
      DType dtype = parse_dtype(entry.at("dtype"), path);
      Shape shape(entry.at("shape").get<std::vector<int64_t>>());
      uint64_t offset = entry.at("offset"), bytes = entry.at("bytes");
      QF_CHECK(bytes == shape_numel(shape) * dtype_size(dtype), path, ": tensor ", name, " claims ", bytes,
               " bytes for shape ", shape);
      QF_CHECK(offset + bytes <= payload_size, path, ": truncated: tensor ", name, " needs bytes up to ",
               offset + bytes, ", the payload holds ", payload_size);
      Tensor tensor = Tensor::empty(shape, dtype);
      std::memcpy(tensor.bytes(), file.data() + payload_start + offset, bytes);
      result.tensors[name] = tensor;
    }
  } catch (const nlohmann::json::exception& error) {
    QF_FAIL(path, ": corrupt header: ", error.what());
  }
  return result;
}

TensorMap tensors_under(const TensorMap& tensors, const std::string& prefix) {
  TensorMap section;
  for (const auto& [name, tensor] : tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) section[name.substr(prefix.size())] = tensor;
  return section;
}

}  // namespace qforge
