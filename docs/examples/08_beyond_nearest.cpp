// Chapter 8, beyond round-to-nearest: cross-layer equalization on one pair of layers (the
// ranges it balances, the function it keeps, the per-tensor error it removes) and AdaRound
// on one small layer (the codes it changes, the loss before and after).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "quant/adaround.h"
#include "quant/equalize.h"
#include "quant/prepare.h"
#include "quant/qat_modules.h"
#include "quant/qconfig.h"

using namespace qforge;
using nlohmann::json;

namespace {

void calibrate(nn::Module& prepared, const Tensor& x) {
  NoGradGuard no_grad;
  prepared.eval();
  quant::set_fake_quant(prepared, false);
  quant::set_observers(prepared, true, /*even_in_eval=*/true);
  prepared.forward(x);
  quant::set_observers(prepared, false);
  quant::set_fake_quant(prepared, true);
}

double squared_error(const Tensor& a, const Tensor& b) {
  double total = 0;
  for (int64_t i = 0; i < a.numel(); ++i) total += (a.data()[i] - b.data()[i]) * (a.data()[i] - b.data()[i]);
  return total / static_cast<double>(a.size(0));
}

void print_ranges(const char* when, const quant::PairRanges& ranges) {
  std::printf("%s: first layer's rows", when);
  for (float r : ranges.first) std::printf(" %6.3f", r);
  std::printf(" | second layer's columns");
  for (float r : ranges.second) std::printf(" %6.3f", r);
  std::printf("\n");
}

// A copy of a float Sequential's parameters into a fresh one of the same shape.
std::shared_ptr<nn::Sequential> pair(Generator& generator) {
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Linear>(4, 3, true, generator), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Linear>(3, 2, true, generator)});
}

}  // namespace

int main() {
  NoGradGuard no_grad;
  Generator generator(8);
  // Equalization: a pair whose hidden channels have weight ranges 100x apart.
  auto model = pair(generator);
  auto& first = dynamic_cast<nn::Linear&>(*model->children()[0].second);
  for (int64_t j = 0; j < 4; ++j) {
    first.weight.data()[0 * 4 + j] *= 8.0f;
    first.weight.data()[2 * 4 + j] *= 0.08f;
  }
  const Tensor x = relu(Tensor::randn({256, 4}, generator));
  TensorMap original;
  for (auto& [key, tensor] : model->state_dict()) original[key] = tensor.clone();
  const Tensor before = model->forward(x);
  print_ranges("before", quant::pair_ranges(*model)[0]);
  const quant::EqualizeReport report = quant::equalize(*model);
  print_ranges("after ", quant::pair_ranges(*model)[0]);
  const Tensor after = model->forward(x);
  double largest = 0;
  for (int64_t i = 0; i < after.numel(); ++i)
    largest = std::max(largest, static_cast<double>(std::fabs(after.data()[i] - before.data()[i]) /
                                                    std::max(1e-3f, std::fabs(before.data()[i]))));
  std::printf("%zu pair, %d sweeps; outputs changed by at most 1e-5 relative: %s\n", report.pairs.size(),
              report.sweeps, largest < 1e-5 ? "yes" : "no");
  // 4-bit per-tensor weights, before and after: one grid per layer for all its channels.
  const quant::QuantSpec w4 = quant::parse_quant_spec(
      json{{"weight", {{"bits", 4}, {"per_channel", false}}}, {"activation", {{"bits", 8}}}}, "chapter.json");
  for (const bool equalized : {false, true}) {
    auto copy = pair(generator);
    copy->load_state_dict(equalized ? model->state_dict() : original, "pair");
    auto prepared = quant::prepare_qat(copy, w4);
    calibrate(*prepared, x);
    std::printf("W4A8 per tensor, %s: mean squared output error %.5f\n",
                equalized ? "equalized" : "as trained", squared_error(prepared->forward(x), before));
  }

  // AdaRound: one 64-input linear layer at 3 bits per tensor, on ReLU-like (non-negative) inputs.
  auto layer = std::make_shared<nn::Linear>(64, 8, true, generator);
  auto float_layer = std::make_shared<nn::Linear>(64, 8, true, generator);
  float_layer->weight = layer->weight.clone();
  float_layer->bias = layer->bias.clone();
  auto prepared = quant::prepare_qat(
      std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{layer}),
      quant::parse_quant_spec(
          json{{"weight", {{"bits", 3}, {"per_channel", false}}}, {"activation", {{"bits", 8}}}},
          "chapter.json"));
  const Tensor inputs = relu(Tensor::randn({512, 64}, generator));
  calibrate(*prepared, inputs);
  auto& qat = dynamic_cast<quant::QatLinear&>(*prepared->model->children()[0].second);
  const float scale = qat.weight_quant->qparams().scale[0];
  auto code = [&](float w) { return static_cast<int>(std::clamp(std::nearbyint(w / scale), -4.0f, 3.0f)); };
  const double error_nearest = squared_error(prepared->forward(inputs), float_layer->forward(inputs));
  const quant::AdaRoundReport rounded =
      quant::adaround(*prepared, {.iterations = 2000, .images = 512, .batch = 32, .lr = 1e-2},
                      [&] { prepared->forward(inputs); });
  std::printf("\nAdaRound, one 64-input 8-output layer, 3-bit weights (scale %.4f).\n", scale);
  std::printf("The first weights whose code it changed:\n    W/s  nearest  adaround\n");
  for (int64_t i = 0, shown = 0; i < layer->weight.numel() && shown < 6; ++i) {
    const int nearest = code(float_layer->weight.data()[i]), learned = code(layer->weight.data()[i]);
    if (nearest == learned) continue;
    std::printf("  %+.2f  %7d  %8d\n", float_layer->weight.data()[i] / scale, nearest, learned);
    ++shown;
  }
  const quant::AdaRoundedLayer& result = rounded.layers[0];
  std::printf("%lld of %lld codes changed; reconstruction loss %.4f -> %.4f\n",
              static_cast<long long>(result.changed), static_cast<long long>(result.weights),
              result.loss_nearest, result.loss_adaround);
  std::printf("mean squared output error of the fake-quant layer: %.4f -> %.4f\n", error_nearest,
              squared_error(prepared->forward(inputs), float_layer->forward(inputs)));
  return 0;
}
