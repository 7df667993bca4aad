// Crash-safe file writes (Note [Atomic writes]): every file qforge writes goes to a
// temporary name in the same folder, is flushed, then renamed over the target, so a
// crash leaves either the old file or the new one, never a torn one.
#pragma once

#include <string>
#include <string_view>

namespace qforge {

void write_file_atomically(const std::string& path, std::string_view bytes);
std::string read_file(const std::string& path);  // whole file; error names the path

}  // namespace qforge
