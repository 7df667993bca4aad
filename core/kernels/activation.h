// exp, sigmoid and tanh for the LSTM cell, written with + − × ÷, floor and an exponent
// built from bits, so a loop over them vectorizes (libm's expf and tanhf are calls the
// compiler cannot vectorize; PyTorch's cells use Sleef's vectorized versions for the same
// reason). Every LSTM in qforge — the float layer, its QAT simulation, the integer LSTMs
// and their lookup tables — computes the cell with these, so they agree to the bit.
// Accuracy (tests/core/test_activation.cpp): exp within 2 ulp of std::exp on [−87, 88];
// sigmoid and tanh within 2e-7 absolute of libm.
#pragma once

#include <bit>
#include <cstdint>

namespace qforge::kernels {

// Cephes' expf: e^x = 2^n · e^r with n = round(x·log2 e), r = x − n·ln 2 (in two parts
// for precision), e^r by its degree-6 minimax polynomial.
inline float exp_float(float x) {
  x = x < -87.0f ? -87.0f : x;  // 2^n stays a normal float; e^-87 ≈ 1.6e-38
  x = x > 88.0f ? 88.0f : x;
  // n = round(x·log2 e) by the 1.5·2^23 trick (adding it leaves only the integer part in the
  // mantissa): plain arithmetic, where floor or nearbyint would be a library call per element.
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = x - n * 0.693359375f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.0f;
  return e_r * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}

inline float sigmoid_float(float v) { return 1.0f / (1.0f + exp_float(-v)); }

// tanh(v) = 1 − 2/(e^(2v) + 1): exact limits ±1, absolute error ~1e-7 near 0.
inline float tanh_float(float v) { return 1.0f - 2.0f / (exp_float(2.0f * v) + 1.0f); }

}  // namespace qforge::kernels
