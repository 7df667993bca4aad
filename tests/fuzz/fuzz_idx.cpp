// libFuzzer harness: the IDX reader, plain and gzip (zlib reads both; inputs starting
// with 1f 8b are gzip streams). Success or one qforge::Error, nothing else.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/qforge_fuzz_idx." + std::to_string(::getpid());
  if (std::FILE* file = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, file);
    std::fclose(file);
  }
  try {
    qforge::data::read_idx(path);
  } catch (const qforge::Error&) {
  }
  return 0;
}
