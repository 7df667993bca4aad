// qforge::Error and the one checking macro every layer uses.
// A check names the op / file / config key, what was expected and what was found,
// e.g. "conv2d: expected 4-D input (N,C,H,W), got [3,28,28]". Internal invariants
// use assert; user-facing checks use QF_CHECK, which throws and never exits.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace qforge {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
// Streams every argument into one message; lets call sites write
// QF_CHECK(ok, "linear: expected ", n, " features, got ", m).
template <typename... Args>
[[noreturn]] void throw_error(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  throw Error(out.str());
}
}  // namespace detail

}  // namespace qforge

#define QF_CHECK(condition, ...)                                  \
  do {                                                            \
    if (!(condition)) ::qforge::detail::throw_error(__VA_ARGS__); \
  } while (false)

#define QF_FAIL(...) ::qforge::detail::throw_error(__VA_ARGS__)
