// A fresh, empty folder under the system temp directory for one test's files.
#pragma once

#include <filesystem>
#include <string>

namespace qforge::testing {

// temp/qforge_<name>, emptied if a previous run left it.
inline std::string fresh_temp_folder(const std::string& name) {
  auto folder = std::filesystem::temp_directory_path() / ("qforge_" + name);
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder);
  return folder.string();
}

}  // namespace qforge::testing
