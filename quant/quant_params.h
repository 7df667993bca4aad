// Quantization parameters and the one place the affine mapping lives (Note [Mapping]):
//   q = clamp(nearbyint(x · (1/s)) + z, qmin, qmax),   x̂ = (q − z) · s
// nearbyint rounds half to even under the default FP environment, and x is multiplied
// by the float reciprocal of s, exactly as PyTorch's fake-quant kernels do
// (fake_quantize_tensor_cachemask_kernel), so that simulation, PyTorch and the integer
// runtime round every value the same way. Ranges cover any bit width 1..16, signed or
// unsigned, optionally narrow (signed: -(2^(b-1)-1)..) or reduced by one bit (PyTorch's
// reduce_range).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace qforge::quant {

struct QuantRange {
  int64_t quant_min, quant_max;
  int64_t levels() const { return quant_max - quant_min + 1; }
};

// PyTorch's ranges: unsigned 0..2^b-1, signed -2^(b-1)..2^(b-1)-1; reduce_range drops
// one bit; narrow_range drops the most negative signed level (symmetric int8: -127..127).
QuantRange quant_range(int bits, bool is_signed, bool reduce_range = false, bool narrow_range = false);

// Per-tensor parameters have one entry; per-channel ones have one per channel of `axis`.
struct QuantParams {
  std::vector<float> scale;
  std::vector<int64_t> zero_point;
  int64_t axis = -1;  // -1: per tensor
  bool is_per_channel() const { return axis >= 0; }
};

// What a quantizer produces: bit width and sign of the integer type, symmetric or
// affine, per tensor (axis < 0) or per channel.
struct QuantScheme {
  int bits = 8;
  bool is_signed = false;
  bool symmetric = false;
  int64_t axis = -1;
  bool reduce_range = false;
  bool narrow_range = false;
  // Binary weights (Note [Binary weights], quant/fake_quantize.h): 1 bit, the two levels −1
  // and +1 times a scale α, no zero — not the affine 1-bit grid {−1, 0}.
  bool binary = false;
  QuantRange range() const {
    return binary ? QuantRange{-1, 1} : quant_range(bits, is_signed, reduce_range, narrow_range);
  }
  // PyTorch treats any range other than the 8-bit defaults as "customized": a symmetric
  // unsigned scheme then centres its zero point at (qmin+qmax)//2 instead of 128. A reduced
  // range counts too: PyTorch 1.13 keeps 128 there, a level outside [0, 127] that clamps
  // every value to the top of the range; qforge centres it (63), as for any other range.
  bool has_customized_range() const { return bits != 8 || narrow_range || reduce_range; }
};

// Observed range -> scale and zero point, the two conventions (every observer and
// calibrator ends in one of them):
//   qparams_from_min_max  PyTorch's _calculate_qparams, per tensor (one entry) or per
//                         channel: affine s = (max − min)/(qmax − qmin), z = qmin − round(min/s);
//                         symmetric s = max(|min|, max)/((qmax − qmin)/2), z = 0 or the middle.
//                         A never-observed entry (min +inf, max −inf) gives s = 1, z = 0;
//                         any other non-finite range (a diverged run) gives s = NaN, so the
//                         NaN reaches the loss check and the finiteness gate instead of a
//                         plausible scale hiding it.
//   qparams_from_amax     NVIDIA's calibrators: symmetric s = amax/qmax, z = 0.
// Scales are at least FLT_EPSILON, as PyTorch's eps.
QuantParams qparams_from_min_max(const std::vector<float>& min_values, const std::vector<float>& max_values,
                                 const QuantScheme& scheme);
QuantParams qparams_from_amax(const std::vector<float>& amax, const QuantScheme& scheme);

// Note [Bias quantization]
// A conv or linear layer's bias is added to its int32 accumulator, so deployment holds it
// as int32 levels of the accumulator's scale s_c = f32(s_x·s_w[c]) (the input's scale times
// the weight's): b_q = clamp(nearbyint(b/s_c), int32), b̂ = b_q·s_c — what fbgemm, ONNX's
// QLinearConv and ONNX Runtime's QDQ fusion require. The simulation (QatConv2d and
// QatLinear in eval mode), convert and the ONNX export all use b̂, so the integer model,
// its .qfm and its QDQ ONNX compute one model. (PyTorch 1.13's onednn path adds the float
// bias instead; with it a QDQ export disagreed with qforge on 0.3-0.7% of images.)
inline float bias_scale(float input_scale, float weight_scale) { return input_scale * weight_scale; }
// b̂ per output channel; weight_scale has one entry per channel (or one for all).
std::vector<float> quantize_bias(const std::vector<float>& bias, float input_scale,
                                 const std::vector<float>& weight_scale);
// The int32 levels b_q themselves (the ONNX export's initializer).
std::vector<int32_t> bias_levels(const std::vector<float>& bias, float input_scale,
                                 const std::vector<float>& weight_scale);

// The unclamped quantized level nearbyint(x·(1/s)) + z, as a float (PyTorch's qval_f):
// the straight-through mask is quant_min <= this <= quant_max.
inline float quantize_unclamped(float x, float inverse_scale, float zero_point) {
  return zero_point + std::nearbyint(x * inverse_scale);
}

// clamp(level, qmin, qmax) with selects, so the kernels that call it vectorize (fmin/fmax
// are library calls). Unlike PyTorch's fmin/fmax, a NaN stays NaN instead of becoming
// quant_min, so a diverging run reaches the NaN-loss check.
inline float clamp_level(float level, float quant_min, float quant_max) {
  level = level < quant_min ? quant_min : level;
  return level > quant_max ? quant_max : level;
}

// x̂ = (q − z)·s. Levels stay in float: exact for every range up to 16 bits.
inline float dequantize_level(float level, float scale, float zero_point) {
  return (level - zero_point) * scale;
}

}  // namespace qforge::quant
