// Binary weights (Note [Binary weights], quant/fake_quantize.h): the op against hand-computed
// values (α = mean |w|, signs with 0 -> +1, the clipped straight-through gradient, α's gradient),
// α's gradient by finite differences, the FakeQuantize module (α follows the weights, or is
// learned), the config's checks, and convert: int8 ±1 codes with α as the weight scale, the
// simulation and the integer model agreeing, one bit per weight in the .qfm.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/zoo.h"
#include "quant/convert.h"
#include "quant/fake_quantize.h"
#include "quant/int8/integer_ops.h"
#include "quant/prepare.h"
#include "tests/gradcheck.h"
#include "tests/temp_folder.h"

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;

TEST_CASE("binary fake quantization: α = mean |w|, ŵ = α·sign (0 -> +1), STE clipped at α, dα = Σ g·sign") {
  // Two output channels of three weights.
  const Tensor w = Tensor::from_vector({2, 3}, {0.5f, -0.25f, 0.0f, -2.0f, 1.0f, -0.5f});
  const std::vector<float> alpha = binary_scale(w, 0);
  REQUIRE(alpha.size() == 2);
  CHECK(alpha[0] == doctest::Approx(0.25f));        // (0.5 + 0.25 + 0) / 3
  CHECK(alpha[1] == doctest::Approx(3.5f / 3.0f));  // (2 + 1 + 0.5) / 3
  CHECK(binary_scale(w, -1)[0] == doctest::Approx(4.25f / 6.0f));

  Tensor x = w.clone();
  x.set_requires_grad(true);
  Tensor a = Tensor::from_vector({2}, alpha);
  a.set_requires_grad(true);
  const Tensor y = fake_quantize_binary(x, a, 0, 0.5f);
  const std::vector<float> expected{alpha[0], -alpha[0], alpha[0], -alpha[1], alpha[1], -alpha[1]};
  CHECK(y.to_vector() == expected);
  // L = Σ y·g with g = (1, 2, 3, 4, 5, 6).
  sum(mul(y, Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}))).backward();
  // dw = g where |w| <= α: channel 0 has α 0.25 (0.5 is outside), channel 1 α 1.1667 (2 is outside).
  CHECK(x.grad().to_vector() == std::vector<float>{0, 2, 3, 0, 5, 6});
  // dα = 0.5·Σ g·sign(w): 0.5·(1 − 2 + 3) = 1, 0.5·(−4 + 5 − 6) = −2.5.
  CHECK(a.grad().to_vector() == std::vector<float>{1.0f, -2.5f});
}

TEST_CASE("binary fake quantization: α's gradient matches finite differences, per channel and per tensor") {
  const Tensor w = testing::distinct_leaf({4, 3, 2, 2}, 7, 0.05f).detach();  // no weight at 0
  for (int64_t axis : {int64_t{0}, int64_t{-1}}) {
    CAPTURE(axis);
    const int64_t extent = axis < 0 ? 1 : 4;
    const Tensor alpha = testing::random_leaf({extent}, 9, 0.2f, 1.0f);
    testing::check_gradients(
        [&](const std::vector<Tensor>& in) { return fake_quantize_binary(w, in[0], axis); }, {alpha});
  }
}

TEST_CASE("binary FakeQuantize: α follows the weights; a learned α trains; the config is checked") {
  const QuantSpec spec =
      parse_quant_spec(json::parse(R"({"weight": {"bits": 1, "binary": true}})"), "b.json");
  CHECK(spec.defaults.weight.scheme.binary);
  CHECK(spec.defaults.weight.scheme.range().quant_min == -1);
  CHECK(spec.defaults.weight.scheme.range().quant_max == 1);
  FakeQuantize quantizer(spec.defaults.weight, 2);
  CHECK(quantizer.is_calibrated());  // α comes from the weights, no data needed
  Tensor w = Tensor::from_vector({2, 2}, {1.0f, -3.0f, 0.5f, 0.5f});
  quantizer.eval();
  CHECK(quantizer.forward(w).to_vector() == std::vector<float>{2.0f, -2.0f, 0.5f, 0.5f});
  w = Tensor::from_vector({2, 2}, {4.0f, 0.0f, -1.0f, 1.0f});  // new weights: new α, in eval too
  CHECK(quantizer.forward(w).to_vector() == std::vector<float>{2.0f, 2.0f, -1.0f, 1.0f});
  CHECK(quantizer.qparams().scale == std::vector<float>{2.0f, 1.0f});

  json learnable = {{"weight", {{"bits", 1}, {"binary", true}, {"learnable", true}}}};
  FakeQuantize learned(parse_quant_spec(learnable, "b.json").defaults.weight, 2);
  learned.train();
  // Channel 0 has three positive weights and one negative: dΣŵ/dα_0 = grad_factor·(3 − 1) > 0.
  Tensor weights = Tensor::from_vector({2, 4}, {0.5f, 0.25f, 0.75f, -0.5f, -1.0f, -1.0f, 1.0f, -1.0f});
  const float before = learned.forward(weights).to_vector()[0];
  CHECK(before == doctest::Approx(0.5f));  // initialized to mean |w|
  // One step of gradient descent on Σ ŵ lowers α_0 (the weights keep their signs).
  sum(learned.forward(weights)).backward();
  for (auto& [name, parameter] : learned.named_parameters())
    if (name == "scale") {
      REQUIRE(parameter.grad().defined());
      for (int64_t c = 0; c < 2; ++c) parameter.data()[c] -= 0.1f * parameter.grad().data()[c];
    }
  CHECK(learned.forward(weights).to_vector()[0] < before - 0.01f);

  auto error_of = [](const char* text) {
    try {
      parse_quant_spec(json::parse(text), "b.json");
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string();
  };
  CHECK(error_of(R"({"weight": {"binary": true}})")
            .find("quant.weight.bits: a binary quantizer has 1 bit, got 8") != std::string::npos);
  CHECK(error_of(R"({"activation": {"bits": 1, "binary": true}})")
            .find("quant.activation.binary: binary applies to weights") != std::string::npos);
  CHECK(error_of(R"({"weight": {"bits": 1, "binary": true, "narrow_range": true}})")
            .find("quant.weight.binary") != std::string::npos);
}

TEST_CASE(
    "binary weights convert to int8 ±1 with α as the weight scale; simulation = integer model; 1 bit in the "
    ".qfm") {
  const std::string folder = testing::fresh_temp_folder("binary_convert");
  for (const char* activation_bits : {"8", "1"}) {
    CAPTURE(activation_bits);
    const json quant =
        json::parse(std::string(R"({"weight": {"bits": 1, "binary": true}, "activation": {"bits": )") +
                    activation_bits + R"(}, "overrides": [{"name": "output", "activation": {"bits": 8}}]})");
    Generator generator(21);
    auto prepared = prepare_qat(nn::build_zoo_model("lenet", generator), parse_quant_spec(quant, "b.json"));
    prepared->train();
    {
      NoGradGuard no_grad;
      for (int i = 0; i < 4; ++i) prepared->forward(relu(Tensor::randn({32, 1, 28, 28}, generator)));
    }
    prepared->eval();
    const int8::IntegerModel integer = convert(*prepared, {1, 28, 28});
    int layers = 0;
    for (const auto& op : integer.ops())
      if (auto* conv = dynamic_cast<const int8::ConvOp*>(op.get())) {
        ++layers;
        const Tensor& q = conv->layer().weight;
        for (int64_t i = 0; i < q.numel(); ++i)
          CHECK((q.data_as<int8_t>()[i] == 1 || q.data_as<int8_t>()[i] == -1));
        CHECK(conv->layer().weight_range.is_binary);
      }
    CHECK(layers == 2);
    // The integer model and the simulation agree on random images.
    NoGradGuard no_grad;
    const Tensor images = relu(Tensor::randn({64, 1, 28, 28}, generator));
    const Tensor a = argmax(integer.forward(images), 1), b = argmax(prepared->forward(images), 1);
    int same = 0;
    for (int64_t i = 0; i < 64; ++i) same += a.data_as<int32_t>()[i] == b.data_as<int32_t>()[i];
    CHECK(same >= 63);
    // One bit per weight on disk, read back exactly.
    const std::string path = folder + "/binary_a" + activation_bits + ".qfm";
    integer.save(path);
    const int8::IntegerModel loaded = int8::IntegerModel::load(path);
    CHECK(loaded.forward(images).to_vector() == integer.forward(images).to_vector());
  }
  // lenet's weights are 98% of its 8-bit file; one bit each makes it about an eighth.
  Generator generator(22);
  auto eight =
      prepare_qat(nn::build_zoo_model("lenet", generator), parse_quant_spec(json::object(), "b.json"));
  eight->train();
  {
    NoGradGuard no_grad;
    eight->forward(relu(Tensor::randn({8, 1, 28, 28}, generator)));
  }
  eight->eval();
  convert(*eight, {1, 28, 28}).save(folder + "/eight.qfm");
  const double ratio = static_cast<double>(std::filesystem::file_size(folder + "/binary_a8.qfm")) /
                       static_cast<double>(std::filesystem::file_size(folder + "/eight.qfm"));
  MESSAGE("binary lenet .qfm / 8-bit: ", ratio);
  CHECK(ratio < 0.16);
}
