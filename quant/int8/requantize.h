// The integer path's number formats and the one place its rounding rules live
// (Note [Requantization]). Everything here is scalar and inline: the reference kernels
// call it per element, and the fast kernels' vector code repeats exactly these float
// operations in the same order, so both backends produce identical bytes.
//
// Note [Requantization]
// A conv or linear layer with uint8 input x (scale sx, zero point zx), int8 weights w
// (scale sw_j per output channel j, zero point 0) and float bias b_j accumulates exactly,
// in int32,
//     acc_j = Σ (x − zx)·w_j            (fbgemm writes it Σ x·w_j − zx·Σ w_j: "column offsets")
// and must produce the uint8 output q_j of scale sy and zero point zy.
// We use the formula PyTorch 1.13 runs here (oneDNN's; ../shared/reference/README_int8.md),
// with every step rounded to float32 (f32), rint = round half to even:
//     src = f32(1/sx), ws_j = f32(1/sw_j), dst = f32(1/sy)
//     bs_j = f32(src·ws_j),  multiplier_j = f32(dst / bs_j),  bias_j' = f32(b_j·bs_j)
//     v = f32(multiplier_j · f32(f32(acc_j) + bias_j'));  with ReLU v = max(v, 0)
//     q = clamp(rint(f32(v + zy)), quant_min, quant_max)        — zy added *before* rounding
// so PyTorch's int8 outputs are reproduced exactly (0 mismatches in 13.6 M outputs).
// fbgemm's formula instead multiplies by M_j = f32(f32(sx·sw_j)/sy), divides the bias by
// sx·sw_j, rounds, and adds zy *after* rounding: a value v + zy that lies within one float
// ulp of a .5 tie, or an exact tie with an odd zy, rounds the other way, so the two
// formulas differ by 1 on about 1e-5 of outputs (and on many outputs when the scales are
// powers of two and ties are exact).
// Fake quantization (quant/fake_quantize.h) rounds x·(1/sy) then adds zy, on a float sum
// of dequantized products: it can differ from either formula by 1 on outputs within a float
// ulp of a tie. So an evaluated conv or linear layer of the simulation runs this very
// formula on an exact accumulator instead (Note [The simulation runs the deployed
// arithmetic], quant/qat_modules.cpp), and simulation and deployment give the same logits.
// Sub-8-bit layers use the same kernels with their own clamps (quant_min, quant_max).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace qforge::quant::int8 {

// The per-tensor quantization of an activation: real = (q − zero_point)·scale, q in
// [quant_min, quant_max] ⊆ [0, 255] (any 2..8-bit unsigned range; signed activation
// ranges are shifted into it by convert).
struct ActivationQuant {
  float scale = 1;
  int32_t zero_point = 0, quant_min = 0, quant_max = 255;
};

// What a conv/linear layer does with its int32 accumulators, per output channel j:
// requantize to uint8 (Note [Requantization]), or dequantize to float
//     y_j = f32(f32(acc_j)·dequant_scale_j) + bias_j   with dequant_scale_j = f32(sx·sw_j),
// for a layer whose output the model keeps in float (the network's logits, say).
struct OutputStage {
  bool is_float_output = false;
  bool has_relu = false;
  std::vector<float> multiplier, bias;  // (O): requantization, or dequant_scale and bias
  int32_t zero_point = 0, quant_min = 0, quant_max = 255;
};

// Builds the output stage of a layer; weight_scale has one entry per output channel.
OutputStage make_requantization(const ActivationQuant& input, const std::vector<float>& weight_scale,
                                const std::vector<float>& bias, const ActivationQuant& output, bool has_relu);
OutputStage make_dequantization(const ActivationQuant& input, const std::vector<float>& weight_scale,
                                const std::vector<float>& bias, bool has_relu);

// Weight quantization at convert time (not a runtime kernel): w (C, per_channel) float ->
// int8 with one scale per channel of axis 0 and zero point 0,
//   q = clamp(rint(w·f32(1/s_c)), quant_min, quant_max)   (torch.quantize_per_channel).
struct WeightRange {
  int32_t quant_min, quant_max;
  // Binary weights (Note [Binary weights], quant/fake_quantize.h): only the two levels
  // quant_min = −1 and quant_max = +1, w >= 0 -> +1 — not the three of a 2-bit narrow range.
  bool is_binary = false;
  int64_t levels() const { return is_binary ? 2 : quant_max - quant_min + 1; }
  int32_t level_step() const { return is_binary ? quant_max - quant_min : 1; }  // between adjacent levels
};
void quantize_weights(int8_t* q, const float* w, int64_t channels, int64_t per_channel,
                      const std::vector<float>& scale, WeightRange range);

// rint under the default rounding mode (half to even), as PyTorch's nearbyint.
inline float round_half_even(float v) { return std::nearbyint(v); }

inline uint8_t requantize_one(int32_t acc, float multiplier, float bias, const OutputStage& s) {
  float v = multiplier * (static_cast<float>(acc) + bias);
  if (s.has_relu) v = v > 0.0f ? v : 0.0f;
  float q = round_half_even(v + static_cast<float>(s.zero_point));
  q = q < static_cast<float>(s.quant_min) ? static_cast<float>(s.quant_min) : q;
  q = q > static_cast<float>(s.quant_max) ? static_cast<float>(s.quant_max) : q;
  return static_cast<uint8_t>(q);
}

inline float dequantize_accumulator(int32_t acc, float dequant_scale, float bias, bool has_relu) {
  const float y = static_cast<float>(acc) * dequant_scale + bias;
  return has_relu && y < 0.0f ? 0.0f : y;
}

// quantize: q = clamp(rint(x·f32(1/s)) + z, qmin, qmax) — the mapping of quant/quant_params.h,
// multiplying by the float reciprocal as PyTorch's quantize_per_tensor does. A NaN input
// becomes quant_min (NaN comparisons are false; the caller rejects NaN inputs first).
inline uint8_t quantize_one(float x, float inverse_scale, const ActivationQuant& q) {
  float level = round_half_even(x * inverse_scale) + static_cast<float>(q.zero_point);
  level = level > static_cast<float>(q.quant_min) ? level : static_cast<float>(q.quant_min);
  level = level < static_cast<float>(q.quant_max) ? level : static_cast<float>(q.quant_max);
  return static_cast<uint8_t>(level);
}

inline float dequantize_one(uint8_t q, const ActivationQuant& p) {
  return static_cast<float>(static_cast<int32_t>(q) - p.zero_point) * p.scale;
}

}  // namespace qforge::quant::int8
