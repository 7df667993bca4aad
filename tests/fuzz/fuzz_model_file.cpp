// libFuzzer harness: tensor files — .qf models and checkpoints, and .qfm integer models,
// whose header is then read op by op (each op's load() checks every field, then the graph check). Success or
// one qforge::Error, nothing else. Seeds: tests/fuzz/corpus/model_file. Checksums stop almost every mutation
// of a whole file at the door, so an input that is JSON is also read as a .qfm header over the tensors of two
// real models (seed.qfm at 8 bits, seed_packed.qfm with 4-bit packed weights, seed_binary.qfm with binary
// weights, one bit each): that reaches every field check
// behind the checksums.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/config_reader.h"

#include "core/error.h"
#include "core/serialize.h"
#include "quant/int8/integer_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static const qforge::TensorFile seeds[] = {
      qforge::load_tensor_file(QFORGE_SOURCE_DIR "/tests/fuzz/seed.qfm"),
      qforge::load_tensor_file(QFORGE_SOURCE_DIR "/tests/fuzz/seed_packed.qfm"),
      qforge::load_tensor_file(QFORGE_SOURCE_DIR "/tests/fuzz/seed_binary.qfm")};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (size > 0 && data[0] == '{')
    for (const qforge::TensorFile& seed : seeds) {
      try {
        qforge::TensorFile edited = seed;
        edited.metadata = qforge::parse_json(text, "fuzz.qfm");
        const auto model = qforge::quant::int8::IntegerModel::from_file(edited, "fuzz.qfm");
        (void)model;
      } catch (const qforge::Error&) {
      }
    }
  try {
    const qforge::TensorFile file = qforge::parse_tensor_file(text, "fuzz.qfm");
    if (file.metadata.is_object() && file.metadata.value("kind", "") == "integer_model") {
      const auto model = qforge::quant::int8::IntegerModel::from_file(file, "fuzz.qfm");
      (void)model;
    }
  } catch (const qforge::Error&) {
  }
  return 0;
}
