// Chapter 7, reading a bit sweep and a sensitivity table: a fixed two-layer network
// (random weights, one layer with outlier channels), its output compared with and
// without quantization as SQNR = 10·log10(Σy² / Σ(y − ŷ)²), in dB. Plain loops
// throughout, so every machine prints the same numbers.
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/random.h"
#include "quant/fake_quantize.h"
#include "quant/observer_factory.h"

using namespace qforge;
using namespace qforge::quant;

namespace {

constexpr int64_t kBatch = 256, kIn = 32, kHidden = 64, kOut = 10;

// y (rows, n) = relu?(x (rows, k) · wᵀ (n, k)), summed in order.
Tensor linear(const Tensor& x, const Tensor& w, bool relu) {
  const int64_t rows = x.size(0), n = w.size(0), k = w.size(1);
  Tensor y = Tensor::empty({rows, n});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      float total = 0;
      for (int64_t i = 0; i < k; ++i) total += x.data()[r * k + i] * w.data()[j * k + i];
      y.data()[r * n + j] = relu && total < 0 ? 0 : total;
    }
  return y;
}

Tensor quantized(const Tensor& x, const char* observer, const QuantScheme& scheme) {
  auto o = make_observer(observer, scheme);
  o->observe(x);
  return fake_quantize(x, o->calculate_qparams(), scheme.range());
}

double sqnr(const Tensor& y, const Tensor& approx) {
  double signal = 0, noise = 0;
  for (int64_t i = 0; i < y.numel(); ++i)
    signal += double{y.data()[i]} * y.data()[i],
        noise += std::pow(double{y.data()[i]} - approx.data()[i], 2.0);
  return 10 * std::log10(signal / noise);
}

struct Net {
  Tensor x, w1, w2;
  // Weights and the hidden activation at `bits` (weights per channel or not) for the
  // layers flagged; the activation's range from `calibrator` ("minmax": affine; a
  // calibrator: NVIDIA's symmetric amax over 0..2^bits−1).
  Tensor forward(int bits, bool per_channel, bool quantize_1, bool quantize_2, const char* calibrator) const {
    QuantScheme weight{.bits = bits, .is_signed = true, .symmetric = true, .axis = per_channel ? 0 : -1};
    const bool is_minmax = std::string(calibrator) == "minmax";
    const QuantScheme activation{.bits = bits, .is_signed = false, .symmetric = !is_minmax};
    const Tensor h = linear(x, quantize_1 ? quantized(w1, "minmax", weight) : w1, true);
    const Tensor hq = quantize_1 ? quantized(h, calibrator, activation) : h;
    return linear(hq, quantize_2 ? quantized(w2, "minmax", weight) : w2, false);
  }
};

}  // namespace

int main() {
  Generator generator(11);
  Net net{Tensor::randn({kBatch, kIn}, generator), Tensor::randn({kHidden, kIn}, generator, 0, 0.2f),
          Tensor::randn({kOut, kHidden}, generator, 0, 0.2f)};
  for (int64_t k = 0; k < kIn; ++k) net.w1.data()[5 * kIn + k] *= 12.0f, net.w1.data()[40 * kIn + k] *= 8.0f;
  const Tensor reference = net.forward(8, true, false, false, "minmax");

  std::printf(
      "bit sweep, weights and activation at the same width: output SQNR in dB (higher is better; +6 dB per "
      "bit is the ideal slope)\n");
  std::printf("  %4s %14s %14s %19s\n", "bits", "per tensor", "per channel", "per ch. + mse act.");
  for (int bits = 2; bits <= 8; ++bits)
    std::printf("  %4d %14.1f %14.1f %19.1f\n", bits,
                sqnr(reference, net.forward(bits, false, true, true, "minmax")),
                sqnr(reference, net.forward(bits, true, true, true, "minmax")),
                sqnr(reference, net.forward(bits, true, true, true, "mse")));

  std::printf("\nsensitivity at 4 bits (per channel): which layer costs the most?\n");
  std::printf("  %-22s %8.1f dB\n  %-22s %8.1f dB\n  %-22s %8.1f dB\n", "only layer 1 quantized",
              sqnr(reference, net.forward(4, true, true, false, "minmax")), "only layer 2 quantized",
              sqnr(reference, net.forward(4, true, false, true, "minmax")), "both",
              sqnr(reference, net.forward(4, true, true, true, "minmax")));
  return 0;
}
