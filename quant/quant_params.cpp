#include "quant/quant_params.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace qforge::quant {

QuantRange quant_range(int bits, bool is_signed, bool reduce_range, bool narrow_range) {
  QF_CHECK(bits >= 1 && bits <= 16, "quantization: bits must be in 1..16, got ", bits);
  QF_CHECK(!(reduce_range && bits < 2), "quantization: reduce_range needs at least 2 bits");
  const int effective = reduce_range ? bits - 1 : bits;
  QuantRange range = is_signed
                         ? QuantRange{-(int64_t{1} << (effective - 1)), (int64_t{1} << (effective - 1)) - 1}
                         : QuantRange{0, (int64_t{1} << effective) - 1};
  if (is_signed && effective == 1) range = {-1, 0};  // a signed single bit: {-1, 0}
  if (narrow_range && is_signed && range.quant_max > 0) range.quant_min = -range.quant_max;
  return range;
}

QuantParams qparams_from_min_max(const std::vector<float>& min_values, const std::vector<float>& max_values,
                                 const QuantScheme& scheme) {
  const QuantRange range = scheme.range();
  const float eps = FLT_EPSILON;
  QuantParams params;
  params.axis = scheme.axis;
  for (std::size_t c = 0; c < min_values.size(); ++c) {
    const float inf = std::numeric_limits<float>::infinity();
    if (min_values[c] == inf && max_values[c] == -inf) {  // never observed
      params.scale.push_back(1.0f);
      params.zero_point.push_back(0);
      continue;
    }
    if (!std::isfinite(min_values[c]) || !std::isfinite(max_values[c])) {  // a diverged range
      params.scale.push_back(std::numeric_limits<float>::quiet_NaN());
      params.zero_point.push_back(0);
      continue;
    }
    const float min_neg = std::min(min_values[c], 0.0f), max_pos = std::max(max_values[c], 0.0f);
    float scale;
    int64_t zero_point = 0;
    if (scheme.symmetric) {
      scale = std::max(
          std::max(-min_neg, max_pos) / (static_cast<float>(range.quant_max - range.quant_min) / 2), eps);
      if (!scheme.is_signed)
        zero_point = scheme.has_customized_range()
                         ? static_cast<int64_t>(std::floor((range.quant_min + range.quant_max) / 2.0))
                         : 128;
    } else {
      scale = std::max((max_pos - min_neg) / static_cast<float>(range.quant_max - range.quant_min), eps);
      zero_point = range.quant_min - static_cast<int64_t>(std::nearbyint(min_neg / scale));
      zero_point = std::clamp(zero_point, range.quant_min, range.quant_max);
    }
    params.scale.push_back(scale);
    params.zero_point.push_back(zero_point);
  }
  return params;
}

std::vector<int32_t> bias_levels(const std::vector<float>& bias, float input_scale,
                                 const std::vector<float>& weight_scale) {
  QF_CHECK(weight_scale.size() == bias.size() || weight_scale.size() == 1,
           "quantize_bias: ", weight_scale.size(), " weight scales for ", bias.size(), " biases");
  std::vector<int32_t> levels(bias.size());
  for (std::size_t c = 0; c < bias.size(); ++c) {
    const float scale = bias_scale(input_scale, weight_scale[weight_scale.size() == 1 ? 0 : c]);
    const double level = std::nearbyint(static_cast<double>(bias[c]) / static_cast<double>(scale));
    QF_CHECK(std::isfinite(level), "quantize_bias: bias ", bias[c], " over scale ", scale, " is not finite");
    levels[c] = static_cast<int32_t>(std::clamp(level, -2147483648.0, 2147483647.0));
  }
  return levels;
}

std::vector<float> quantize_bias(const std::vector<float>& bias, float input_scale,
                                 const std::vector<float>& weight_scale) {
  const std::vector<int32_t> levels = bias_levels(bias, input_scale, weight_scale);
  std::vector<float> out(bias.size());
  for (std::size_t c = 0; c < bias.size(); ++c)
    out[c] = static_cast<float>(levels[c]) *
             bias_scale(input_scale, weight_scale[weight_scale.size() == 1 ? 0 : c]);
  return out;
}

QuantParams qparams_from_amax(const std::vector<float>& amax, const QuantScheme& scheme) {
  const QuantRange range = scheme.range();
  QuantParams params;
  params.axis = scheme.axis;
  for (float a : amax) {
    params.scale.push_back(std::max(a / static_cast<float>(range.quant_max), FLT_EPSILON));
    params.zero_point.push_back(0);
  }
  return params;
}

}  // namespace qforge::quant
