// Chapter 3, affine vs symmetric and per-tensor vs per-channel: a Pareto-distributed
// activation (all positive, long tail) and a Gaussian weight tensor whose channels have
// different spreads, each quantized both ways. Prints the errors and writes
// 03_schemes.svg: both histograms with both clipping ranges drawn.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/random.h"
#include "quant/fake_quantize.h"
#include "quant/observer_factory.h"

using namespace qforge;
using namespace qforge::quant;

namespace {

double mean_squared_error(const Tensor& x, const QuantScheme& scheme) {
  auto observer = make_observer("minmax", scheme);
  observer->observe(x);
  const Tensor y = fake_quantize(x, observer->calculate_qparams(), scheme.range());
  double total = 0;
  for (int64_t i = 0; i < x.numel(); ++i) total += std::pow(y.data()[i] - x.data()[i], 2.0);
  return total / static_cast<double>(x.numel());
}

// One panel: a 60-bin histogram of `values` over [lo, hi] and labelled vertical range lines.
struct Range {
  float from, to;
  const char* color;
  const char* label;
};
std::string panel(const std::vector<float>& values, float lo, float hi, const std::vector<Range>& ranges,
                  const char* title, int top) {
  constexpr int kBins = 60, kLeft = 40, kWidth = 600, kHeight = 180;
  std::vector<int> counts(kBins, 0);
  for (float v : values) counts[std::clamp(static_cast<int>((v - lo) / (hi - lo) * kBins), 0, kBins - 1)]++;
  const int most = *std::max_element(counts.begin(), counts.end());
  char buffer[256];
  std::string svg;
  auto x_of = [&](float v) { return kLeft + (v - lo) / (hi - lo) * kWidth; };
  std::snprintf(buffer, sizeof buffer, "<text x=\"%d\" y=\"%d\" font-size=\"14\">%s</text>\n", kLeft, top - 8,
                title);
  svg += buffer;
  for (int b = 0; b < kBins; ++b) {
    const double h = std::sqrt(static_cast<double>(counts[b]) / most) * kHeight;  // sqrt: the tail shows
    std::snprintf(
        buffer, sizeof buffer, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#8aa\"/>\n",
        kLeft + b * (kWidth / static_cast<double>(kBins)), top + kHeight - h, kWidth / double{kBins} - 1, h);
    svg += buffer;
  }
  std::snprintf(buffer, sizeof buffer,
                "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n"
                "<text x=\"%d\" y=\"%d\" font-size=\"11\">%.2f</text><text x=\"%d\" y=\"%d\" "
                "font-size=\"11\">%.2f</text>\n",
                kLeft, top + kHeight, kLeft + kWidth, top + kHeight, kLeft - 10, top + kHeight + 14, lo,
                kLeft + kWidth - 20, top + kHeight + 14, hi);
  svg += buffer;
  for (std::size_t r = 0; r < ranges.size(); ++r) {
    const Range& range = ranges[r];
    for (float v : {range.from, range.to}) {
      std::snprintf(buffer, sizeof buffer,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\" "
                    "stroke-dasharray=\"6,3\"/>\n",
                    x_of(v), top, x_of(v), top + kHeight, range.color);
      svg += buffer;
    }
    std::snprintf(buffer, sizeof buffer,
                  "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"%s\">%s [%.2f, %.2f]</text>\n",
                  kLeft + kWidth - 230, top + 16 + 16 * static_cast<int>(r), range.color, range.label,
                  range.from, range.to);
    svg += buffer;
  }
  return svg;
}

}  // namespace

int main() {
  Generator generator(3);
  // Activation: Pareto(α = 3) − 1, i.e. x ≥ 0 with a heavy tail (the literature's example).
  Tensor activation = Tensor::empty({50000});
  for (int64_t i = 0; i < activation.numel(); ++i)
    activation.data()[i] = std::pow(1.0f - generator.uniform(), -1.0f / 3.0f) - 1.0f;
  // Weights: 16 output channels of 3·3·16 Gaussian values, channel c with std 0.02·(1 + c).
  Tensor weight = Tensor::randn({16, 144}, generator);
  for (int64_t c = 0; c < 16; ++c)
    for (int64_t k = 0; k < 144; ++k) weight.data()[c * 144 + k] *= 0.02f * static_cast<float>(1 + c);

  const float act_max = *std::max_element(activation.data(), activation.data() + activation.numel());
  std::printf("activation: 50000 values of Pareto(3) - 1, min 0, max %.3f\n", act_max);
  for (int bits : {8, 4}) {
    const double affine = mean_squared_error(activation, {.bits = bits});
    const double symmetric =
        mean_squared_error(activation, {.bits = bits, .is_signed = true, .symmetric = true});
    std::printf(
        "  %d-bit  affine unsigned [0, %.2f]: MSE %.3e   symmetric signed [-%.2f, %.2f]: MSE %.3e (%.1fx)\n",
        bits, act_max, affine, act_max, act_max, symmetric, symmetric / affine);
  }
  const auto [w_lo, w_hi] = std::minmax_element(weight.data(), weight.data() + weight.numel());
  std::printf("weights: 16 channels x 144, std 0.02..0.32, range [%.3f, %.3f]\n", *w_lo, *w_hi);
  for (int bits : {8, 4}) {
    const QuantScheme tensor{.bits = bits, .is_signed = true, .symmetric = true};
    QuantScheme channel = tensor;
    channel.axis = 0;
    const double per_tensor = mean_squared_error(weight, tensor),
                 per_channel = mean_squared_error(weight, channel);
    std::printf("  %d-bit  per tensor: MSE %.3e   per channel: MSE %.3e (%.1fx lower)\n", bits, per_tensor,
                per_channel, per_tensor / per_channel);
  }

  // The picture: the activation with both ranges; channel 0's weights with its own range
  // and the per-tensor one it would otherwise get.
  const float w_max = std::max(-*w_lo, *w_hi);
  float c0_max = 0;
  for (int64_t k = 0; k < 144; ++k) c0_max = std::max(c0_max, std::fabs(weight.data()[k]));
  std::vector<float> act(activation.data(), activation.data() + activation.numel()),
      c0(weight.data(), weight.data() + 144);
  std::string svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"680\" height=\"520\" font-family=\"sans-serif\">\n"
      "<rect width=\"680\" height=\"520\" fill=\"white\"/>\n";
  svg += panel(act, -act_max, act_max,
               {{0, act_max, "#c33", "affine"}, {-act_max, act_max, "#36c", "symmetric"}},
               "Activation, Pareto(3) - 1: symmetric wastes the negative half of the grid", 40);
  svg += panel(c0, -w_max, w_max,
               {{-c0_max, c0_max, "#c33", "per channel"}, {-w_max, w_max, "#36c", "per tensor"}},
               "Weights of channel 0 (std 0.02): the per-tensor range is set by channel 15", 300);
  svg += "</svg>\n";
  std::FILE* file = std::fopen("03_schemes.svg", "w");
  std::fputs(svg.c_str(), file);
  std::fclose(file);
  std::printf("wrote 03_schemes.svg\n");
  return 0;
}
