// Crash-safe file writes (Note [Atomic writes]): every file qforge writes goes to a
// temporary name in the same folder, is flushed, then renamed over the target, so a
// crash leaves either the old file or the new one, never a torn one.
#pragma once

#include <string>
#include <string_view>

#include "core/error.h"

namespace qforge {

// A file could not be written (disk full, permissions, a missing folder): the machine's
// failure, not the data's — a study retries such a run instead of recording it as a result.
class IoError : public Error {
 public:
  using Error::Error;
};

// Throws IoError when the file cannot be written.
void write_file_atomically(const std::string& path, std::string_view bytes);
std::string read_file(const std::string& path);  // whole file; error names the path

}  // namespace qforge
