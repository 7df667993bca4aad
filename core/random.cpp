#include "core/random.h"

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

}  // namespace qforge
