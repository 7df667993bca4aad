#include <doctest/doctest.h>

#include <cmath>

#include "core/autograd.h"
#include "nn/zoo.h"
#include "quant/numeric_suite.h"
#include "quant/prepare.h"

using namespace qforge;
using namespace qforge::quant;

namespace {
// lenet prepared at `bits` (weights and activations) and calibrated on `images`.
std::shared_ptr<QatModel> calibrated_lenet(int bits, const Tensor& images) {
  Generator generator(7);
  const nlohmann::json section = {{"weight", {{"bits", bits}}}, {"activation", {{"bits", bits}}}};
  auto model = prepare_qat(nn::build_zoo_model("lenet", generator), parse_quant_spec(section, "test.json"));
  model->eval();
  set_observers(*model, true, /*even_in_eval=*/true);
  NoGradGuard no_grad;
  (void)model->forward(images);
  set_observers(*model, false);
  return model;
}
}  // namespace

TEST_CASE("sqnr_db: 10·log10(Σx² / Σ(x − x̂)²)") {
  Tensor x = Tensor::empty({2}), approx = Tensor::empty({2});
  x.data()[0] = 1, x.data()[1] = 2, approx.data()[0] = 1, approx.data()[1] = 1;
  CHECK(sqnr_db(x, approx) == doctest::Approx(10 * std::log10(5.0)));
  CHECK(std::isinf(sqnr_db(x, x)));
  CHECK_THROWS_AS(sqnr_db(x, Tensor::empty({3})), Error);
}

TEST_CASE("compare_model_outputs: each layer's output, fused float vs quantized, about 6 dB per bit") {
  Generator generator(3);
  const Tensor images = Tensor::randn({16, 1, 28, 28}, generator);
  const std::vector<std::string> layers{"model.0", "model.9",
                                        "model.11"};  // conv-bn-relu, linear-relu, linear
  std::map<int, std::map<std::string, double>> by_bits;
  for (int bits : {4, 8}) {
    auto quantized = calibrated_lenet(bits, images), fused_float = calibrated_lenet(bits, images);
    set_fake_quant(*fused_float, false);
    const auto names_before = quantized->state_dict();
    by_bits[bits] = compare_model_outputs(*fused_float, *quantized, layers, images);
    // The loggers are gone again: the same parameter and buffer names as before.
    REQUIRE(names_before.count("model.0.conv.weight") == 1);
    const auto names_after = quantized->state_dict();
    CHECK(names_after.size() == names_before.size());
    for (const auto& [name, tensor] : names_before) CHECK(names_after.count(name) == 1);
    // A model against itself has no noise.
    auto same = calibrated_lenet(bits, images);
    for (const auto& entry : compare_model_outputs(*quantized, *same, layers, images)) {
      CAPTURE(entry.first);
      CHECK(std::isinf(entry.second));
    }
  }
  for (const std::string& name : layers) {
    CAPTURE(name);
    CHECK(by_bits[8][name] > 25);
    CHECK(by_bits[8][name] - by_bits[4][name] > 12);  // 4 bits fewer: ≈ 24 dB less
  }
  auto model = calibrated_lenet(8, images);
  CHECK_THROWS_WITH_AS(compare_model_outputs(*model, *model, {"model.42"}, images),
                       doctest::Contains("no layer named \"model.42\""), Error);
}
