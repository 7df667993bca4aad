// Tensor files are untrusted bytes: every truncation, every flipped bit and every crafted
// header must end in one qforge::Error naming the file — never a crash, never garbage
// loaded (issue: a wrapping bounds check read outside the buffer; flipped payload bytes
// loaded silently).
#include <doctest/doctest.h>

#include "core/serialize.h"

using namespace qforge;

namespace {

TensorMap small_tensors() {
  TensorMap tensors;
  tensors["a"] = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  std::vector<int8_t> q{-128, 0, 127};
  tensors["b.q"] = Tensor::from_data<int8_t>({3}, q);
  tensors["empty"] = Tensor::zeros({0, 4});
  return tensors;
}

std::string file_bytes(const TensorMap& tensors, const nlohmann::json& metadata) {
  const std::string path = "/tmp/qforge_serialize_test.qf";
  save_tensor_file(path, tensors, metadata);
  std::string bytes;
  {
    TensorFile check = load_tensor_file(path);  // round trip first
    CHECK(check.metadata == metadata);
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f);
  char buffer[4096];
  std::size_t got;
  while ((got = std::fread(buffer, 1, sizeof buffer, f)) > 0) bytes.append(buffer, got);
  std::fclose(f);
  std::remove(path.c_str());
  return bytes;
}

// A file whose header is `header` (with a valid checksum) and payload `payload`.
std::string crafted(const nlohmann::json& header, const std::string& payload) {
  const std::string text = header.dump();
  std::string file("QFORGE2\n", 8);
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
  const uint32_t crc = crc32_of(text.data(), text.size());
  for (int i = 0; i < 4; ++i) file.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  return file + text + payload;
}

}  // namespace

TEST_CASE("tensor files round-trip, and every truncation and every flipped bit is an error") {
  const TensorMap tensors = small_tensors();
  const std::string bytes = file_bytes(tensors, {{"kind", "test"}, {"scale", 0.1}});
  TensorFile loaded = parse_tensor_file(bytes, "t.qf");
  CHECK(loaded.tensors.at("a").to_vector() == tensors.at("a").to_vector());
  CHECK(loaded.tensors.at("b.q").data_as<int8_t>()[0] == -128);
  CHECK(loaded.tensors.at("empty").numel() == 0);
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    CAPTURE(length);
    CHECK_THROWS_AS(parse_tensor_file(bytes.substr(0, length), "t.qf"), Error);
  }
  for (std::size_t at = 0; at < bytes.size(); ++at)
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = bytes;
      flipped[at] = static_cast<char>(flipped[at] ^ (1 << bit));
      CAPTURE(at);
      CAPTURE(bit);
      CHECK_THROWS_AS(parse_tensor_file(flipped, "t.qf"), Error);
    }
  CHECK_THROWS_WITH_AS(parse_tensor_file(bytes + "x", "t.qf"),
                       doctest::Contains("bytes after the last tensor"), Error);
}

TEST_CASE("crafted headers: wrapping offsets, negative numbers, huge shapes and version 1 are refused") {
  const std::string payload(24, '\0');
  auto entry = [](nlohmann::json offset, nlohmann::json bytes, nlohmann::json shape) {
    return nlohmann::json{{"tensors",
                           {{{"name", "w"},
                             {"dtype", "f32"},
                             {"shape", shape},
                             {"offset", offset},
                             {"bytes", bytes},
                             {"crc32", 0}}}}};
  };
  // offset + bytes wraps around 2^64 to a small number: the old check passed it.
  CHECK_THROWS_WITH_AS(parse_tensor_file(crafted(entry(18446744073709551608ull, 24, {6}), payload), "c.qf"),
                       doctest::Contains("past the end of the payload"), Error);
  CHECK_THROWS_WITH_AS(parse_tensor_file(crafted(entry(-8, 24, {6}), payload), "c.qf"),
                       doctest::Contains("expected a non-negative integer"), Error);
  CHECK_THROWS_WITH_AS(parse_tensor_file(crafted(entry(0, 24, {-6}), payload), "c.qf"),
                       doctest::Contains("expected a non-negative integer"), Error);
  CHECK_THROWS_AS(parse_tensor_file(crafted(entry(0, 24, {1u << 31, 1u << 31, 8}), payload), "c.qf"), Error);
  CHECK_THROWS_WITH_AS(parse_tensor_file(crafted(entry(0, 20, {6}), payload), "c.qf"),
                       doctest::Contains("claims 20 bytes"), Error);
  CHECK_THROWS_WITH_AS(parse_tensor_file(crafted(entry(0, 24, {6}), payload), "c.qf"),
                       doctest::Contains("checksum mismatch"), Error);
  CHECK_THROWS_WITH_AS(parse_tensor_file(crafted(nlohmann::json::array(), ""), "c.qf"),
                       doctest::Contains("no tensor list"), Error);
  CHECK_THROWS_WITH_AS(parse_tensor_file(std::string("QFORGE1\n") + std::string(20, '\0'), "old.qf"),
                       doctest::Contains("version 1"), Error);
}
