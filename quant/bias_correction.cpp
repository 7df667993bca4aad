// Empirical bias correction: Note [Bias correction] (quant/bias_correction.h).
#include "quant/bias_correction.h"

#include <cmath>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "quant/qat_modules.h"

namespace qforge::quant {

namespace {

// Adds Σ over images and positions of (W − Ŵ)·x per output channel to `sums`.
void accumulate(const Tensor& difference_output, std::vector<double>& sums, int64_t& count) {
  const Tensor& y = difference_output;  // (N, C) or (N, C, H, W)
  const int64_t n = y.size(0), channels = y.size(1), positions = y.numel() / (n * channels);
  const float* d = y.data();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t p = 0; p < positions; ++p)
        sums[static_cast<std::size_t>(c)] += d[(i * channels + c) * positions + p];
  count += n * positions;
}

// Measures one layer's E[(W − Ŵ)·x] with `probe` installed, then returns it.
template <typename Layer, typename Difference>
std::vector<float> measure(Layer& layer, int64_t channels, const std::function<void()>& run_batches,
                           Difference&& difference) {
  std::vector<double> sums(static_cast<std::size_t>(channels), 0.0);
  int64_t count = 0;
  with_input_probe(
      layer.input_probe, [&](const Tensor& x) { accumulate(difference(x), sums, count); }, run_batches);
  QF_CHECK(count > 0, "bias correction: no calibration images reached the layer");
  std::vector<float> mean(sums.size());
  for (std::size_t c = 0; c < sums.size(); ++c)
    mean[c] = static_cast<float>(sums[c] / static_cast<double>(count));
  return mean;
}

float add_to(Tensor& bias, const std::vector<float>& correction) {
  float largest = 0;
  for (std::size_t c = 0; c < correction.size(); ++c) {
    QF_CHECK(std::isfinite(correction[c]), "bias correction: channel ", c, " has a non-finite correction");
    bias.data()[c] += correction[c];
    largest = std::max(largest, std::fabs(correction[c]));
  }
  return largest;
}

}  // namespace

BiasCorrectionReport correct_bias(nn::Module& model, const std::function<void()>& run_batches) {
  BiasCorrectionReport report;
  NoGradGuard no_grad;
  for (const auto& [name, module] : model.named_modules()) {
    if (auto* conv = dynamic_cast<QatConv2d*>(module)) {
      if (!conv->weight_quant) continue;  // kept in float: nothing rounds
      Tensor* bias = conv->bn ? &conv->bn->bias : conv->conv->bias.defined() ? &conv->conv->bias : nullptr;
      if (!bias) {
        report.skipped.push_back(name);
        continue;
      }
      // W − Ŵ once per layer: the weights do not change while its inputs are measured.
      const Tensor weight = conv->folded_weight_and_bias().first;
      const Tensor rounding_error = sub(weight, conv->weight_quant->forward(weight));
      const std::vector<float> correction =
          measure(*conv, conv->conv->out_channels, run_batches,
                  [&](const Tensor& x) { return conv2d(x, rounding_error, Tensor(), conv->conv->options); });
      report.layers.push_back({name, add_to(*bias, correction)});
    } else if (auto* linear = dynamic_cast<QatLinear*>(module)) {
      if (!linear->weight_quant) continue;
      if (!linear->linear->bias.defined()) {
        report.skipped.push_back(name);
        continue;
      }
      const Tensor& weight = linear->linear->weight;
      const Tensor rounding_error = sub(weight, linear->weight_quant->forward(weight));
      const std::vector<float> correction =
          measure(*linear, linear->linear->out_features, run_batches,
                  [&](const Tensor& x) { return qforge::linear(x, rounding_error, Tensor()); });
      report.layers.push_back({name, add_to(linear->linear->bias, correction)});
    }
  }
  return report;
}

}  // namespace qforge::quant
