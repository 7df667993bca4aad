#include "quant/int8/requantize.h"

#include "core/error.h"
#include "quant/int8/kernels.h"

namespace qforge::quant::int8 {

namespace {
// f32(1/s), the reciprocal computed in double and rounded once, as PyTorch does.
float reciprocal(float scale) { return static_cast<float>(1.0 / static_cast<double>(scale)); }

void check_channels(const std::vector<float>& weight_scale, const std::vector<float>& bias) {
  QF_CHECK(!weight_scale.empty(), "int8 output stage: no weight scales");
  QF_CHECK(bias.empty() || bias.size() == weight_scale.size(), "int8 output stage: ", bias.size(),
           " biases for ", weight_scale.size(), " output channels");
}
}  // namespace

OutputStage make_requantization(const ActivationQuant& input, const std::vector<float>& weight_scale,
                                const std::vector<float>& bias, const ActivationQuant& output,
                                bool has_relu) {
  check_channels(weight_scale, bias);
  OutputStage stage;
  stage.has_relu = has_relu;
  stage.zero_point = output.zero_point;
  stage.quant_min = output.quant_min;
  stage.quant_max = output.quant_max;
  const float src = reciprocal(input.scale), dst = reciprocal(output.scale);
  for (std::size_t j = 0; j < weight_scale.size(); ++j) {
    const float bias_scale = src * reciprocal(weight_scale[j]);  // bs_j = f32(src·ws_j)
    stage.multiplier.push_back(dst / bias_scale);
    stage.bias.push_back(bias.empty() ? 0.0f : bias[j] * bias_scale);
  }
  return stage;
}

OutputStage make_dequantization(const ActivationQuant& input, const std::vector<float>& weight_scale,
                                const std::vector<float>& bias, bool has_relu) {
  check_channels(weight_scale, bias);
  OutputStage stage;
  stage.is_float_output = true;
  stage.has_relu = has_relu;
  for (std::size_t j = 0; j < weight_scale.size(); ++j) {
    stage.multiplier.push_back(input.scale * weight_scale[j]);
    stage.bias.push_back(bias.empty() ? 0.0f : bias[j]);
  }
  return stage;
}

void quantize_weights(int8_t* q, const float* w, int64_t channels, int64_t per_channel,
                      const std::vector<float>& scale, WeightRange range) {
  QF_CHECK(static_cast<int64_t>(scale.size()) == channels, "quantize_weights: ", scale.size(), " scales for ",
           channels, " channels");
  QF_CHECK(range.quant_min >= -128 && range.quant_max <= 127 && range.quant_min < range.quant_max,
           "quantize_weights: range [", range.quant_min, ", ", range.quant_max, "] does not fit int8");
  if (range.is_binary) {  // the sign, as fake_quantize_binary takes it (the scale only scales)
    for (int64_t k = 0; k < channels * per_channel; ++k)
      q[k] = static_cast<int8_t>(w[k] >= 0.0f ? range.quant_max : range.quant_min);
    return;
  }
  const float lo = static_cast<float>(range.quant_min), hi = static_cast<float>(range.quant_max);
  for (int64_t c = 0; c < channels; ++c) {
    // The reciprocal as the fake-quant kernel computes it (quant/fake_quantize.cpp), so the
    // deployed integers are the ones QAT trained with.
    const float inverse_scale = 1.0f / scale[c];
    for (int64_t i = 0; i < per_channel; ++i) {
      float level = round_half_even(w[c * per_channel + i] * inverse_scale);
      level = level < lo ? lo : level;
      level = level > hi ? hi : level;
      q[c * per_channel + i] = static_cast<int8_t>(level);
    }
  }
}

}  // namespace qforge::quant::int8
