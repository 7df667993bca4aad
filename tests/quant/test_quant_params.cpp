// quant/quant_params: the bias on the accumulator's int32 grid (Note [Bias quantization]).
// The scale and zero-point formulas themselves are held to PyTorch's vectors in
// test_observer_conformance.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "quant/quant_params.h"

using namespace qforge;
using namespace qforge::quant;

TEST_CASE("bias quantization: int32 levels of s_x*s_w[c], nearest, clamped; b-hat on that grid") {
  const float input_scale = 0.02f;
  const std::vector<float> weight_scale{0.005f, 0.0125f, 0.001f};
  const float step0 = input_scale * weight_scale[0];  // 1e-4
  // 0.01234 / 1e-4 = 123.4 -> 123; -0.0000251 / 1.25e-4 = -0.2008 -> 0; 3e6 / 2e-5 = 1.5e11 -> INT32_MAX.
  const std::vector<float> bias{0.01234f, -0.0000251f, 3e6f};
  const std::vector<int32_t> levels = bias_levels(bias, input_scale, weight_scale);
  CHECK(levels == std::vector<int32_t>{123, 0, std::numeric_limits<int32_t>::max()});
  const std::vector<float> rounded = quantize_bias(bias, input_scale, weight_scale);
  CHECK(rounded[0] == doctest::Approx(123 * step0).epsilon(1e-6));
  CHECK(rounded[1] == 0.0f);
  // Within half a step of the float bias wherever it is not clamped.
  CHECK(std::abs(rounded[0] - bias[0]) <= 0.5f * step0);
  // In the accumulator's units (what oneDNN's requantization adds: f32(b * f32(1/sx * 1/sw))) the
  // deployed bias is an integer up to float rounding: the integer model adds exactly b_q.
  const float to_accumulator =
      static_cast<float>(1.0 / input_scale) * static_cast<float>(1.0 / weight_scale[0]);
  CHECK(std::abs(rounded[0] * to_accumulator - 123.0f) < 1e-3f);

  // One weight scale (per-tensor) serves every channel.
  CHECK(bias_levels({0.01f, -0.01f}, 0.1f, {0.01f}) == std::vector<int32_t>{10, -10});
  // Half-way values round to even, as nearbyint does (2.5 -> 2, 3.5 -> 4).
  CHECK(bias_levels({1.25f, 1.75f}, 1.0f, {0.5f}) == std::vector<int32_t>{2, 4});
  // Wrong channel counts and non-finite biases are errors naming the function.
  CHECK_THROWS_WITH_AS(bias_levels({1.0f, 2.0f}, 0.1f, {0.1f, 0.1f, 0.1f}),
                       doctest::Contains("quantize_bias: 3 weight scales for 2 biases"), Error);
  CHECK_THROWS_WITH_AS(bias_levels({std::numeric_limits<float>::quiet_NaN()}, 0.1f, {0.1f}),
                       doctest::Contains("is not finite"), Error);
}
