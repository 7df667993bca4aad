// Chapter 1, the mapping: a range becomes a scale and a zero point, one number goes
// x -> q -> x̂, and rounding is half to even. Everything here is quant/quant_params.h.
#include <cstdio>

#include "quant/quant_params.h"

using namespace qforge::quant;

namespace {

// x -> q -> x̂ through the one mapping (Note [Mapping]).
void trace(float x, const QuantParams& p, const QuantRange& range) {
  const float scale = p.scale[0], zero = static_cast<float>(p.zero_point[0]);
  const float level = quantize_unclamped(x, 1.0f / scale, zero);
  const float q =
      clamp_level(level, static_cast<float>(range.quant_min), static_cast<float>(range.quant_max));
  const float back = dequantize_level(q, scale, zero);
  std::printf("  x = %8.4f  ->  q = %4.0f%s  ->  x^ = %8.4f   error %+.4f\n", x, q,
              level != q ? " (clamped)" : "", back, back - x);
}

}  // namespace

int main() {
  std::printf("ranges (quant_range):\n");
  for (int bits : {2, 4, 8})
    for (bool is_signed : {false, true}) {
      const QuantRange r = quant_range(bits, is_signed);
      std::printf("  %d-bit %-8s %5lld .. %lld\n", bits, is_signed ? "signed" : "unsigned",
                  static_cast<long long>(r.quant_min), static_cast<long long>(r.quant_max));
    }
  std::printf("  8-bit signed narrow (symmetric weights): %lld .. %lld\n",
              static_cast<long long>(quant_range(8, true, false, true).quant_min),
              static_cast<long long>(quant_range(8, true, false, true).quant_max));

  // An activation observed in [-1.0, 2.0], quantized to uint8, affine.
  const QuantScheme affine{.bits = 8, .is_signed = false, .symmetric = false};
  const QuantParams a = qparams_from_min_max({-1.0f}, {2.0f}, affine);
  std::printf("\naffine uint8 for [-1, 2]: scale = 3/255 = %.7f, zero point = %lld\n", a.scale[0],
              static_cast<long long>(a.zero_point[0]));
  for (float x : {0.7f, -1.0f, 0.0f, 2.0f, 2.5f}) trace(x, a, affine.range());

  // The same range, symmetric int8: the zero point is 0 and half the grid covers [-1, 0].
  const QuantScheme symmetric{.bits = 8, .is_signed = true, .symmetric = true};
  const QuantParams s = qparams_from_min_max({-1.0f}, {2.0f}, symmetric);
  std::printf("\nsymmetric int8 for [-1, 2]: scale = 2/127.5 = %.7f, zero point = %lld\n", s.scale[0],
              static_cast<long long>(s.zero_point[0]));
  for (float x : {0.7f, -1.0f, 2.0f}) trace(x, s, symmetric.range());

  std::printf("\nrounding half to even (nearbyint), scale 1, zero point 0:\n");
  for (float x : {0.5f, 1.5f, 2.5f, -0.5f, -1.5f})
    std::printf("  %4.1f -> %2.0f\n", x, quantize_unclamped(x, 1.0f, 0.0f));
  return 0;
}
