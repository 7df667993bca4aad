// AdaRound (Note [AdaRound], quant/adaround.h): its pieces by hand (h(V), the regularizer, the
// β schedule), one layer whose best rounding is known, and the properties on a small network
// with a folded batch norm — every code floor or ceil (at most one step from nearest), the
// weights left on the quantizer's grid (what convert reads back), each layer's
// reconstruction loss below nearest rounding's, two passes of the images per layer.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "quant/adaround.h"
#include "quant/bn_folding.h"
#include "quant/fake_quantize_module.h"
#include "quant/prepare.h"
#include "quant/qat_modules.h"

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;

namespace {

void calibrate(nn::Module& prepared, const std::vector<Tensor>& batches) {
  NoGradGuard no_grad;
  prepared.eval();
  set_fake_quant(prepared, false);
  set_observers(prepared, true, /*even_in_eval=*/true);
  for (const Tensor& batch : batches) prepared.forward(batch);
  set_observers(prepared, false);
  set_fake_quant(prepared, true);
}

}  // namespace

TEST_CASE("AdaRound's pieces by hand: h(V), its inverse, the regularizer, the β schedule") {
  // h(0) = σ(0)·1.2 − 0.1 = 0.5; saturated at 0 and 1 beyond σ = 1/12 and 11/12.
  CHECK(rectified_sigmoid(0.0f) == doctest::Approx(0.5f));
  CHECK(rectified_sigmoid(10.0f) == 1.0f);
  CHECK(rectified_sigmoid(-10.0f) == 0.0f);
  CHECK(rectified_sigmoid(1.0f) == doctest::Approx(1.2f / (1.0f + std::exp(-1.0f)) - 0.1f));
  for (float h : {0.0f, 0.3f, 0.5f, 0.9f, 1.0f})
    CHECK(rectified_sigmoid(rectified_sigmoid_inverse(h)) == doctest::Approx(h).epsilon(1e-5));
  // 1 − |2h − 1|^β: 1 at h = ½, 0 at 0 and 1; h = 0.75, β = 2: 1 − 0.25.
  CHECK(rounding_regularizer(0.5f, 20) == 1.0f);
  CHECK(rounding_regularizer(0.0f, 20) == 0.0f);
  CHECK(rounding_regularizer(1.0f, 2) == 0.0f);
  CHECK(rounding_regularizer(0.75f, 2) == doctest::Approx(0.75f));
  CHECK(rounding_regularizer(0.25f, 3) == doctest::Approx(1 - 0.125f));
  // 100 iterations, warm start 0.2: no regularizer before step 20, then β from 20 down to 2.
  const AdaRoundOptions options{.iterations = 100, .beta_start = 20, .beta_end = 2, .warm_start = 0.2};
  CHECK_FALSE(is_regularized(options, 19));
  CHECK(is_regularized(options, 20));
  CHECK(annealed_beta(options, 5) == 20);
  CHECK(annealed_beta(options, 20) == 20);
  CHECK(annealed_beta(options, 60) == doctest::Approx(11));  // halfway: 2 + 18/2
  CHECK(annealed_beta(options, 100) == doctest::Approx(2));
}

TEST_CASE("AdaRound on one layer: of two weights nearest rounds down together, it rounds one up") {
  // 4-bit signed symmetric per-tensor weights: scale max|w|/7.5 = 3/7.5 = 0.4. W/s = 1.40 and
  // 2.47 both round down (error −0.87 steps on every input (1, 1, 0)); the best codes put one
  // of them up (+0.13 steps), and the loss prefers the one closer to its ceiling: 1 and 3.
  Generator generator(1);
  auto fc = std::make_shared<nn::Linear>(3, 1, true, generator);
  fc->weight = Tensor::from_vector({1, 3}, {0.4f * 1.40f, 0.4f * 2.47f, 3.0f});
  fc->bias = Tensor::from_vector({1}, {0.0f});
  auto prepared =
      prepare_qat(std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{fc}),
                  parse_quant_spec(json{{"weight", {{"bits", 4}, {"per_channel", false}}}}, "t.json"));
  const Tensor batch = Tensor::from_vector({4, 3}, {1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 0});
  calibrate(*prepared, {batch});
  int passes = 0;
  const AdaRoundReport report =
      adaround(*prepared, {.iterations = 2000, .images = 4, .batch = 4, .lr = 1e-2}, [&] {
        ++passes;
        NoGradGuard no_grad;
        prepared->forward(batch);
      });
  CHECK(passes == 2);  // one layer: the quantized and the float pass
  REQUIRE(report.layers.size() == 1);
  const AdaRoundedLayer& layer = report.layers[0];
  CHECK(layer.weights == 3);
  CHECK(layer.changed == 1);
  // Nearest: output 0.4·3 against 1.548 on 3 of 4 images: (0.348)²·3/4.
  CHECK(layer.loss_nearest == doctest::Approx(0.348 * 0.348 * 0.75).epsilon(1e-3));
  CHECK(layer.loss_adaround == doctest::Approx(0.052 * 0.052 * 0.75).epsilon(1e-3));
  const std::vector<float> w = fc->weight.to_vector();
  CHECK(w[0] == doctest::Approx(0.4f * 1));
  CHECK(w[1] == doctest::Approx(0.4f * 3));
  CHECK(w[2] == doctest::Approx(0.4f * 7));  // 7.5 clamps to the top level, as nearest does
}

TEST_CASE("AdaRound on a network with a folded batch norm: floor or ceil, on the grid, lower loss") {
  Generator generator(3);
  auto conv1 = std::make_shared<nn::Conv2d>(2, 6, 3, Conv2dOptions::square(1, 1), false, generator);
  auto bn = std::make_shared<nn::BatchNorm2d>(6);
  bn->weight = Tensor::from_vector({6}, {1.5f, 0.7f, 1.0f, 2.0f, 0.5f, 1.2f});
  bn->bias = Tensor::from_vector({6}, {0.1f, -0.2f, 0.3f, 0.0f, 0.2f, -0.1f});
  bn->running_mean = Tensor::from_vector({6}, {0.05f, -0.1f, 0.2f, 0.0f, 0.1f, -0.05f});
  bn->running_var = Tensor::from_vector({6}, {0.5f, 2.0f, 1.0f, 0.8f, 1.5f, 0.3f});
  auto conv2 = std::make_shared<nn::Conv2d>(6, 4, 3, Conv2dOptions::square(2, 1), true, generator);
  auto fc = std::make_shared<nn::Linear>(4 * 4 * 4, 5, true, generator);
  std::vector<nn::ModulePtr> layers{conv1,
                                    bn,
                                    std::make_shared<nn::ReLU>(),
                                    conv2,
                                    std::make_shared<nn::ReLU>(),
                                    std::make_shared<nn::Flatten>(),
                                    fc};
  auto float_model = std::make_shared<nn::Sequential>(layers);
  float_model->eval();
  // A twin to prepare, with the same parameters.
  TensorMap state;
  for (auto& [key, tensor] : float_model->state_dict()) state[key] = tensor.clone();
  Generator other(9);
  auto twin = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(2, 6, 3, Conv2dOptions::square(1, 1), false, other),
      std::make_shared<nn::BatchNorm2d>(6), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Conv2d>(6, 4, 3, Conv2dOptions::square(2, 1), true, other),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(4 * 4 * 4, 5, true, other)});
  twin->load_state_dict(state, "float");
  auto prepared = prepare_qat(twin, parse_quant_spec(json{{"weight", {{"bits", 3}, {"per_channel", true}}},
                                                          {"activation", {{"bits", 8}}}},
                                                     "t.json"));
  std::vector<Tensor> batches;
  for (int i = 0; i < 3; ++i) batches.push_back(relu(Tensor::randn({16, 2, 8, 8}, generator)));
  calibrate(*prepared, batches);

  // Each quantized layer: its folded float weight, the quantizer, the nearest levels.
  struct Before {
    std::string name;
    std::vector<float> nearest;
  };
  auto layer_weights = [&](auto&& visit) {
    for (const auto& [name, module] : prepared->named_modules()) {
      if (auto* conv = dynamic_cast<QatConv2d*>(module))
        visit(name, conv->folded_weight_and_bias().first, *conv->weight_quant);
      if (auto* linear = dynamic_cast<QatLinear*>(module))
        visit(name, linear->linear->weight, *linear->weight_quant);
    }
  };
  auto levels_of = [](const Tensor& weight, const FakeQuantize& q) {
    const QuantParams p = q.qparams();
    const QuantRange range = q.spec().scheme.range();
    const int64_t k = weight.numel() / weight.size(0);
    std::vector<float> levels;
    for (int64_t i = 0; i < weight.numel(); ++i) {
      const float s = p.scale.size() == 1 ? p.scale[0] : p.scale[static_cast<std::size_t>(i / k)];
      levels.push_back(std::clamp(std::nearbyint(weight.data()[i] * (1.0f / s)),
                                  static_cast<float>(range.quant_min), static_cast<float>(range.quant_max)));
    }
    return levels;
  };
  std::vector<Before> before;
  layer_weights([&](const std::string& name, const Tensor& w, const FakeQuantize& q) {
    before.push_back({name, levels_of(w, q)});
  });
  REQUIRE(before.size() == 3);
  auto output_error = [&] {
    NoGradGuard no_grad;
    double total = 0;
    for (const Tensor& x : batches) {
      const std::vector<float> q = prepared->forward(x).to_vector(), f = float_model->forward(x).to_vector();
      for (std::size_t i = 0; i < q.size(); ++i) total += (q[i] - f[i]) * (q[i] - f[i]);
    }
    return total;
  };
  const double error_before = output_error();
  int passes = 0;
  const AdaRoundReport report =
      adaround(*prepared, {.iterations = 300, .images = 48, .batch = 8, .lr = 1e-2}, [&] {
        ++passes;
        NoGradGuard no_grad;
        for (const Tensor& x : batches) prepared->forward(x);
      });
  const double error_after = output_error();
  CHECK(passes == 6);  // two per layer
  REQUIRE(report.layers.size() == 3);
  CHECK(report.skipped.empty());
  std::size_t index = 0;
  int64_t changed = 0;
  layer_weights([&](const std::string& name, const Tensor& w, FakeQuantize& q) {
    CAPTURE(name);
    const AdaRoundedLayer& layer = report.layers[index];
    CHECK(layer.name == name);
    CHECK(layer.loss_adaround < layer.loss_nearest);
    // On the grid: fake quantization returns the stored weights (what convert rounds back).
    NoGradGuard no_grad;
    const std::vector<float> quantized = q.forward(w).to_vector(), stored = w.to_vector();
    for (std::size_t i = 0; i < stored.size(); ++i)
      REQUIRE(quantized[i] == doctest::Approx(stored[i]).epsilon(1e-5).scale(1e-6));
    // Each code floor or ceil of W/s: at most one step from nearest; `changed` counts the others.
    const std::vector<float> levels = levels_of(w, q);
    int64_t differ = 0;
    for (std::size_t i = 0; i < levels.size(); ++i) {
      REQUIRE(std::fabs(levels[i] - before[index].nearest[i]) <= 1.0f);
      differ += levels[i] != before[index].nearest[i];
    }
    CHECK(differ == layer.changed);
    changed += differ;
    MESSAGE(name, ": loss ", layer.loss_nearest, " -> ", layer.loss_adaround, ", ", layer.changed, " of ",
            layer.weights, " codes changed");
    ++index;
  });
  CHECK(changed > 0);
  CHECK(error_after < error_before);
  MESSAGE("output squared error against the float network: ", error_before, " -> ", error_after);
}

TEST_CASE("AdaRound refuses calibration passes that differ, and skips binary weights") {
  Generator generator(2);
  auto fc = std::make_shared<nn::Linear>(4, 3, true, generator);
  auto prepared = prepare_qat(std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{fc}),
                              parse_quant_spec(json{{"weight", {{"bits", 4}}}}, "t.json"));
  const Tensor x = relu(Tensor::randn({8, 4}, generator));
  calibrate(*prepared, {x});
  const std::vector<float> values = x.to_vector();
  const Tensor half = Tensor::from_vector({4, 4}, std::vector<float>(values.begin(), values.begin() + 16));
  int passes = 0;
  CHECK_THROWS_WITH_AS(adaround(*prepared, {.iterations = 10, .images = 8},
                                [&] {
                                  NoGradGuard no_grad;
                                  prepared->forward(++passes == 1 ? x : half);
                                }),
                       doctest::Contains("the calibration passes differ"), Error);
  for (const auto& [name, module] : prepared->named_modules())  // no probe left behind
    if (auto* linear = dynamic_cast<QatLinear*>(module)) CHECK(linear->input_probe == nullptr);

  auto binary = prepare_qat(std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
                                std::make_shared<nn::Linear>(4, 3, true, generator)}),
                            parse_quant_spec(json{{"weight", {{"bits", 1}, {"binary", true}}}}, "t.json"));
  calibrate(*binary, {x});
  const AdaRoundReport report = adaround(*binary, {.iterations = 10, .images = 8}, [&] {
    NoGradGuard no_grad;
    binary->forward(x);
  });
  CHECK(report.layers.empty());
  CHECK(report.skipped.size() == 1);
}
