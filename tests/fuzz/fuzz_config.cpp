// libFuzzer harness: the config reader. The first line of the input is one `--set`
// assignment, the rest the config file. Any input must end in success or one
// qforge::Error — never a crash, a hang or an unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/config_reader.h"
#include "core/error.h"
#include "train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string assignment = newline == std::string::npos ? "" : input.substr(0, newline);
  const std::string text = newline == std::string::npos ? input : input.substr(newline + 1);
  try {
    nlohmann::json json = qforge::parse_json(text, "fuzz.json");
    if (!assignment.empty()) qforge::apply_override(json, assignment);
    qforge::train::parse_config(json, "fuzz.json");
  } catch (const qforge::Error&) {
  }
  return 0;
}
