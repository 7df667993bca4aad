// Locates ../shared/reference (PyTorch-computed vectors): $QFORGE_REFERENCE_DIR, else the
// folder beside the checkout. A missing file fails the test (REQUIRE), never skips it.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "core/file_io.h"

namespace qforge::testing {

inline nlohmann::json load_reference(const std::string& name) {
  const char* configured = std::getenv("QFORGE_REFERENCE_DIR");
  const std::string folder =
      configured && *configured ? configured : QFORGE_SOURCE_DIR "/../shared/reference";
  const std::string path = folder + "/" + name;
  INFO("reference file ", path, " (set QFORGE_REFERENCE_DIR to move it)");
  REQUIRE(std::filesystem::is_regular_file(path));
  return nlohmann::json::parse(read_file(path));
}

}  // namespace qforge::testing
