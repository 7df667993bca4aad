// The LSTM cell's vectorizable exp, sigmoid and tanh (core/kernels/activation.h) against
// libm over their whole useful range.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "core/kernels/activation.h"

using namespace qforge::kernels;

namespace {
// Distance in units in the last place between two positive floats.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4), std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - ib);
}
}  // namespace

TEST_CASE("exp_float is within 2 ulp of std::exp on [-87, 88]; sigmoid and tanh within 2e-7 absolute") {
  int64_t worst_ulps = 0;
  double worst_sigmoid = 0, worst_tanh = 0;
  for (double v = -87.0; v <= 88.0; v += 0.000731) {
    const float x = static_cast<float>(v);
    worst_ulps = std::max(worst_ulps, ulps(exp_float(x), std::exp(x)));
    worst_sigmoid = std::max(worst_sigmoid, std::abs(double{sigmoid_float(x)} - 1.0 / (1.0 + std::exp(-v))));
    worst_tanh = std::max(worst_tanh, std::abs(double{tanh_float(x)} - std::tanh(v)));
  }
  MESSAGE("exp: ", worst_ulps, " ulp; sigmoid: ", worst_sigmoid, "; tanh: ", worst_tanh);
  CHECK(worst_ulps <= 2);
  CHECK(worst_sigmoid <= 2e-7);
  CHECK(worst_tanh <= 2e-7);
  // Limits: saturate, never NaN or infinity.
  CHECK(tanh_float(1e30f) == 1.0f);
  CHECK(tanh_float(-1e30f) == -1.0f);
  CHECK(sigmoid_float(-1e30f) >= 0.0f);
  CHECK(sigmoid_float(1e30f) == 1.0f);
  CHECK(std::isfinite(exp_float(1e30f)));
}
