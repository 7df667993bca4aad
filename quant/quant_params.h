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

// The unclamped quantized value nearbyint(x·(1/s)) + z, as a float (PyTorch's qval_f):
// the straight-through mask is quant_min <= this <= quant_max.
inline float quantize_unclamped(float x, float inverse_scale, int64_t zero_point) {
  return static_cast<float>(zero_point) + std::nearbyint(x * inverse_scale);
}

inline int64_t clamp_quantized(float unclamped, const QuantRange& range) {
  return static_cast<int64_t>(std::fmin(std::fmax(unclamped, static_cast<float>(range.quant_min)),
                                        static_cast<float>(range.quant_max)));
}

// x̂ = (q − z)·s
inline float dequantize_value(int64_t q, float scale, int64_t zero_point) {
  return static_cast<float>(q - zero_point) * scale;
}

inline float fake_quantize_value(float x, float scale, float inverse_scale, int64_t zero_point,
                                 const QuantRange& range) {
  return dequantize_value(clamp_quantized(quantize_unclamped(x, inverse_scale, zero_point), range), scale,
                          zero_point);
}

}  // namespace qforge::quant
