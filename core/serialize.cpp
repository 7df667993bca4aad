#include "core/serialize.h"

#include <zlib.h>

#include <cstring>
#include <limits>

#include "core/file_io.h"

namespace qforge {

namespace {
constexpr char kMagic[9] = "QFORGE2\n";
constexpr char kMagicVersion1[9] = "QFORGE1\n";
constexpr std::size_t kPreamble = 20;  // magic, header length, header CRC

DType parse_dtype(const nlohmann::json& name, const std::string& where) {
  for (DType dtype : {DType::f32, DType::s8, DType::u8, DType::s32})
    if (name.is_string() && name.get<std::string>() == dtype_name(dtype)) return dtype;
  QF_FAIL(where, ": unknown dtype ", name.dump());
}

uint64_t read_le(std::string_view bytes, std::size_t at, int count) {
  uint64_t value = 0;
  for (int i = 0; i < count; ++i)
    value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[at + i])) << (8 * i);
  return value;
}

void append_le(std::string& out, uint64_t value, int count) {
  for (int i = 0; i < count; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// A non-negative integer that fits `limit`, or an error naming the field.
uint64_t bounded(const nlohmann::json& value, uint64_t limit, const std::string& where) {
  QF_CHECK(value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0), where,
           ": expected a non-negative integer, got ", value.dump());
  const uint64_t number = value.get<uint64_t>();
  QF_CHECK(number <= limit, where, ": ", number, " reaches past the end of the payload (", limit,
           " bytes): the file is truncated or corrupt");
  return number;
}
}  // namespace

uint32_t crc32_of(const void* data, std::size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* bytes = static_cast<const Bytef*>(data);
  while (size > 0) {  // zlib takes uInt lengths
    const uInt chunk = static_cast<uInt>(std::min<std::size_t>(size, std::numeric_limits<uInt>::max()));
    crc = crc32(crc, bytes, chunk);
    bytes += chunk, size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

void save_tensor_file(const std::string& path, const TensorMap& tensors, const nlohmann::json& metadata) {
  nlohmann::json entries = nlohmann::json::array();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const uint64_t bytes = tensor.size_bytes();
    entries.push_back({{"name", name},
                       {"dtype", dtype_name(tensor.dtype())},
                       {"shape", std::vector<int64_t>(tensor.shape())},
                       {"offset", offset},
                       {"bytes", bytes},
                       {"crc32", crc32_of(tensor.bytes(), bytes)}});
    offset += bytes;
  }
  const std::string header = nlohmann::json{
      {"metadata", metadata.is_null() ? nlohmann::json::object() : metadata},
      {"tensors", entries}}.dump();
  std::string file(kMagic, 8);
  append_le(file, header.size(), 8);
  append_le(file, crc32_of(header.data(), header.size()), 4);
  file += header;
  file.reserve(file.size() + offset);
  for (const auto& [name, tensor] : tensors)
    file.append(reinterpret_cast<const char*>(tensor.bytes()), tensor.size_bytes());
  write_file_atomically(path, file);
}

TensorFile load_tensor_file(const std::string& path) { return parse_tensor_file(read_file(path), path); }

TensorFile parse_tensor_file(std::string_view file, const std::string& path) {
  QF_CHECK(file.size() < 8 || std::memcmp(file.data(), kMagicVersion1, 8) != 0, path,
           ": written by an older qforge (tensor file version 1, without checksums); it cannot be verified — "
           "re-create it with this version");
  QF_CHECK(file.size() >= kPreamble && std::memcmp(file.data(), kMagic, 8) == 0, path,
           ": not a qforge tensor file (bad magic or shorter than its ", kPreamble, "-byte preamble)");
  const uint64_t header_length = read_le(file, 8, 8);
  QF_CHECK(header_length <= file.size() - kPreamble, path, ": truncated (header of ", header_length,
           " bytes, file of ", file.size(), ")");
  const std::string_view header_text = file.substr(kPreamble, header_length);
  QF_CHECK(crc32_of(header_text.data(), header_text.size()) == read_le(file, 16, 4), path,
           ": header checksum mismatch (the file is corrupt or was edited)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text);
  } catch (const nlohmann::json::exception& error) {
    QF_FAIL(path, ": corrupt header: ", error.what());
  }
  QF_CHECK(header.is_object() && header.contains("tensors") && header["tensors"].is_array(), path,
           ": corrupt header (no tensor list)");
  const std::string_view payload = file.substr(kPreamble + header_length);
  TensorFile result;
  result.metadata = header.value("metadata", nlohmann::json::object());
  uint64_t expected_offset = 0;
  for (const nlohmann::json& entry : header["tensors"]) {
    QF_CHECK(entry.is_object() && entry.contains("name") && entry["name"].is_string(), path,
             ": corrupt header (a tensor entry without a name)");
    const std::string name = entry["name"];
    const std::string where = path + ": tensor " + name;
    QF_CHECK(entry.contains("dtype") && entry.contains("shape") && entry.contains("offset") &&
                 entry.contains("bytes") && entry.contains("crc32") && entry["shape"].is_array(),
             where, ": entry lacks dtype, shape, offset, bytes or crc32");
    const DType dtype = parse_dtype(entry["dtype"], where);
    Shape shape;
    uint64_t elements = 1;
    for (const nlohmann::json& extent : entry["shape"]) {
      const uint64_t e = bounded(extent, payload.size(), where + " shape");
      elements = e == 0 ? 0 : (elements > payload.size() / e ? payload.size() + 1 : elements * e);
      shape.push_back(static_cast<int64_t>(e));
    }
    const uint64_t offset = bounded(entry["offset"], payload.size(), where + " offset");
    const uint64_t bytes = bounded(entry["bytes"], payload.size() - offset, where + " bytes");
    QF_CHECK(elements <= payload.size() && bytes == elements * dtype_size(dtype), where, ": claims ", bytes,
             " bytes for shape ", shape, " of ", dtype_name(dtype));
    QF_CHECK(offset == expected_offset, where, ": starts at byte ", offset, " of the payload, expected ",
             expected_offset, " (tensors are stored back to back)");
    expected_offset += bytes;
    const char* data = payload.data() + offset;
    QF_CHECK(entry["crc32"].is_number_unsigned() && crc32_of(data, bytes) == entry["crc32"].get<uint64_t>(),
             where, ": checksum mismatch (the file is corrupt)");
    QF_CHECK(!result.tensors.count(name), where, ": appears twice");
    Tensor tensor = Tensor::empty(shape, dtype);
    std::memcpy(tensor.bytes(), data, bytes);
    result.tensors[name] = tensor;
  }
  QF_CHECK(expected_offset == payload.size(), path, ": ", payload.size() - expected_offset,
           " bytes after the last tensor (the file was extended or its header edited)");
  return result;
}

TensorMap tensors_under(const TensorMap& tensors, const std::string& prefix) {
  TensorMap section;
  for (const auto& [name, tensor] : tensors)
    if (name.compare(0, prefix.size(), prefix) == 0) section[name.substr(prefix.size())] = tensor;
  return section;
}

}  // namespace qforge
