#include "core/random.h"

#include <cstdlib>
#include <sstream>

#include "core/error.h"

#include <cmath>

namespace qforge {

float Generator::normal() {
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  // u1 in (0, 1] so log(u1) is finite.
  double u1 = (static_cast<double>(engine_() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double u2 = static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0);
  double radius = std::sqrt(-2.0 * std::log(u1));
  double angle = 2.0 * M_PI * u2;
  cached_normal_ = static_cast<float>(radius * std::sin(angle));
  has_cached_normal_ = true;
  return static_cast<float>(radius * std::cos(angle));
}

std::string Generator::state() const {
  std::ostringstream out;
  out << engine_ << ' ' << has_cached_normal_ << ' ' << std::hexfloat << cached_normal_;
  return out.str();
}

void Generator::set_state(const std::string& text) {
  std::istringstream in(text);
  std::mt19937_64 engine;
  bool has_cached = false;
  std::string cached;
  in >> engine >> has_cached >> cached;
  QF_CHECK(!in.fail() && in.eof() && !cached.empty(), "random state: not a generator state");
  engine_ = engine;
  has_cached_normal_ = has_cached;
  cached_normal_ = std::strtof(cached.c_str(), nullptr);
}

}  // namespace qforge
