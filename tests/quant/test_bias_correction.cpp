// Empirical bias correction (Note [Bias correction], quant/bias_correction.h): one corrected
// bias by hand, then the property — the quantized network's mean output error against the
// float network falls — and what is skipped.
#include <doctest/doctest.h>

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "nn/zoo.h"
#include "quant/bias_correction.h"
#include "quant/prepare.h"

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;

namespace {

void calibrate_on(nn::Module& prepared, const std::vector<Tensor>& batches) {
  NoGradGuard no_grad;
  prepared.eval();
  set_fake_quant(prepared, false);
  set_observers(prepared, true, /*even_in_eval=*/true);
  for (const Tensor& batch : batches) prepared.forward(batch);
  set_observers(prepared, false);
  set_fake_quant(prepared, true);
}

}  // namespace

TEST_CASE("bias correction by hand: b += mean over inputs of (W − Ŵ)·x") {
  Generator generator(1);
  auto fc = std::make_shared<nn::Linear>(2, 1, true, generator);
  // 2-bit signed symmetric weights, levels −2..1 at scale max|w|/1.5 = 0.6: 0.9 -> 1.5 -> 2,
  // clamped to 1 = 0.6; 0.2 -> 0.33 -> 0. W − Ŵ = (0.3, 0.2).
  fc->weight = Tensor::from_vector({1, 2}, {0.9f, 0.2f});
  fc->bias = Tensor::from_vector({1}, {0.125f});
  auto prepared =
      prepare_qat(std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{fc}),
                  parse_quant_spec(json{{"weight", {{"bits", 2}, {"per_channel", false}}}}, "t.json"));
  // Inputs 0 and 1 (on the input quantizer's grid [0, 1]): x1 and x2 are each 1 in two of four rows.
  const Tensor batch = Tensor::from_vector({4, 2}, {1, 0, 0, 1, 1, 1, 0, 0});
  calibrate_on(*prepared, {batch});
  int passes = 0;
  const BiasCorrectionReport report = correct_bias(*prepared, [&] {
    ++passes;
    NoGradGuard no_grad;
    prepared->forward(batch);
  });
  CHECK(passes == 1);  // one quantized layer: one pass
  REQUIRE(report.layers.size() == 1);
  CHECK(report.layers[0].largest == doctest::Approx(0.25f).epsilon(1e-4));  // (0.3·2 + 0.2·2)/4
  CHECK(fc->bias.data()[0] == doctest::Approx(0.375f).epsilon(1e-4));
  CHECK(fc->weight.to_vector() == std::vector<float>{0.9f, 0.2f});  // weights untouched
}

TEST_CASE("bias correction lowers the quantized network's mean output error on the calibration data") {
  for (const char* name : {"lenet", "resnet8"}) {
    const std::string model_name = name;
    CAPTURE(model_name);
    Generator generator(4);
    nn::ModulePtr float_model = nn::build_zoo_model(name, generator);
    float_model->eval();
    TensorMap state;
    for (auto& [key, tensor] : float_model->state_dict()) state[key] = tensor.clone();
    nn::ModulePtr copy = nn::build_zoo_model(name, generator);
    copy->load_state_dict(state, "float");
    auto prepared = prepare_qat(
        copy, parse_quant_spec(json{{"weight", {{"bits", 3}, {"per_channel", false}}}}, "t.json"));
    std::vector<Tensor> batches;
    for (int i = 0; i < 4; ++i) batches.push_back(relu(Tensor::randn({16, 1, 28, 28}, generator)));
    calibrate_on(*prepared, batches);
    // Mean over the logits of |E[quantized − float]| over the calibration images.
    auto mean_error = [&] {
      NoGradGuard no_grad;
      prepared->eval();
      std::vector<double> bias(10, 0.0);
      int64_t n = 0;
      for (const Tensor& x : batches) {
        const std::vector<float> q = prepared->forward(x).to_vector(),
                                 f = float_model->forward(x).to_vector();
        for (std::size_t k = 0; k < q.size(); ++k) bias[k % 10] += q[k] - f[k];
        n += x.size(0);
      }
      double total = 0;
      for (double b : bias) total += std::fabs(b / static_cast<double>(n));
      return total / 10;
    };
    const double before = mean_error();
    const BiasCorrectionReport report = correct_bias(*prepared, [&] {
      NoGradGuard no_grad;
      for (const Tensor& x : batches) prepared->forward(x);
    });
    const double after = mean_error();
    CHECK(!report.layers.empty());
    CHECK(report.skipped.empty());
    CHECK(after < before);
    MESSAGE(model_name, ": ", report.layers.size(), " layers corrected; mean logit error ", before, " -> ",
            after);
  }
}
