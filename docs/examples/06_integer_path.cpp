// Chapter 6, the integer path: one linear layer (4 inputs, 3 outputs, ReLU) computed
// step by step as the integer runtime does (quant/int8/requantize.h), held to the
// reference and fast kernels and to the fake-quant simulation; then the AVX2 trap.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "quant/int8/kernels.h"

using namespace qforge::quant::int8;

int main() {
  // The layer as QAT left it: input scale/zero point, per-channel weight scales, int8
  // weights (already rounded), float bias, output scale/zero point.
  const ActivationQuant in{.scale = 0.02f, .zero_point = 100}, out{.scale = 0.05f, .zero_point = 0};
  const std::vector<float> x{0.50f, -1.20f, 2.00f, 0.31f};
  const std::vector<int8_t> w{12, -40, 127, 3, -30, -66, 5, 7, 90, -90, 30, 1};  // (3, 4)
  const std::vector<float> weight_scale{0.01f, 0.004f, 0.02f}, bias{0.3f, -0.1f, 0.05f};

  std::printf("1. quantize the input: q = clamp(rint(x / %.2f) + %d, 0, 255)\n  ", in.scale, in.zero_point);
  std::vector<uint8_t> xq(4);
  for (int k = 0; k < 4; ++k) {
    xq[k] = quantize_one(x[k], 1.0f / in.scale, in);
    std::printf(" %.2f -> %d", x[k], xq[k]);
  }
  std::printf("\n2. accumulate in int32: acc_j = sum_k x_k w_jk - zx * sum_k w_jk (the column offset)\n");
  std::vector<int32_t> acc(3);
  for (int j = 0; j < 3; ++j) {
    int32_t raw = 0, column_sum = 0;
    for (int k = 0; k < 4; ++k) raw += xq[k] * w[j * 4 + k], column_sum += w[j * 4 + k];
    acc[j] = raw - in.zero_point * column_sum;
    std::printf("   j=%d: %6d - %d * %4d = %6d\n", j, raw, in.zero_point, column_sum, acc[j]);
  }
  const OutputStage stage = make_requantization(in, weight_scale, bias, out, true);
  std::printf("3. requantize: q = clamp(rint(max(m_j * (acc_j + b_j'), 0) + zy), 0, 255)\n");
  std::vector<uint8_t> by_hand(3);
  for (int j = 0; j < 3; ++j) {
    by_hand[j] = requantize_one(acc[j], stage.multiplier[j], stage.bias[j], stage);
    std::printf("   j=%d: m = %.6f  b' = %9.3f  -> q = %3d  (y = %.3f, float layer %.3f)\n", j,
                stage.multiplier[j], stage.bias[j], by_hand[j], by_hand[j] * out.scale, std::max(0.0f, [&] {
                  float y = bias[j];
                  for (int k = 0; k < 4; ++k)
                    y += ((xq[k] - in.zero_point) * in.scale) * (w[j * 4 + k] * weight_scale[j]);
                  return y;
                }()));
  }
  std::vector<uint8_t> reference_y(3), fast_y(3);
  reference::linear(reference_y.data(), xq.data(), w.data(), 1, 3, 4, in.zero_point, stage);
  fast::LinearLayer layer(w.data(), 3, 4, in.zero_point, stage);
  layer.run(fast_y.data(), xq.data(), 1);
  // (The fast kernel is whichever instruction set this CPU has; every one gives these bytes.)
  std::printf("4. the reference kernel gives %d %d %d, the fast one %d %d %d\n", reference_y[0],
              reference_y[1], reference_y[2], fast_y[0], fast_y[1], fast_y[2]);

  std::printf("\nthe AVX2 trap: vpmaddubsw adds two u8 x s8 products into int16, saturating:\n");
  const int exact = 255 * 127 + 255 * 127;
  std::printf("   255*127 + 255*127 = %d, but int16 holds at most 32767: %d is off by %d\n", exact,
              std::min(exact, 32767), exact - 32767);
  std::printf(
      "   qforge's AVX2 kernel widens to int16 first (vpmaddwd, exact); VNNI's vpdpbusd is exact too\n");
  return 0;
}
