// Cross-layer equalization (Note [Cross-layer equalization], quant/equalize.h): one pair by
// hand, then the property on every kind of pair the zoo and a layer list hold — the float
// function is unchanged and each pair's per-channel ranges become equal.
#include <doctest/doctest.h>

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "nn/zoo.h"
#include "quant/equalize.h"
#include "quant/prepare.h"

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;

TEST_CASE("equalization of one linear pair, by hand: s = sqrt(r1/r2), both ranges sqrt(r1·r2)") {
  Generator generator(1);
  auto first = std::make_shared<nn::Linear>(2, 2, true, generator);
  auto second = std::make_shared<nn::Linear>(2, 1, true, generator);
  first->weight = Tensor::from_vector({2, 2}, {2.0f, 0.0f, 0.0f, 0.5f});  // r1 = (2, 0.5)
  first->bias = Tensor::from_vector({2}, {1.0f, 1.0f});
  second->weight = Tensor::from_vector({1, 2}, {1.0f, -4.0f});  // r2 = (1, 4)
  second->bias = Tensor::from_vector({1}, {0.25f});
  nn::Sequential model({first, std::make_shared<nn::ReLU>(), second});
  const EqualizeReport report = equalize(model);
  REQUIRE(report.pairs.size() == 1);
  CHECK(report.pairs[0].first == "0");
  CHECK(report.pairs[0].second == "2");
  // s = (sqrt(2/1), sqrt(0.5/4)) = (1.41421, 0.353553): rows of W1 and b1 divided by s, columns of W2 times
  // s.
  const float s0 = std::sqrt(2.0f), s1 = std::sqrt(0.125f);
  CHECK(first->weight.data()[0] == doctest::Approx(2.0f / s0));
  CHECK(first->weight.data()[3] == doctest::Approx(0.5f / s1));
  CHECK(first->bias.data()[0] == doctest::Approx(1.0f / s0));
  CHECK(first->bias.data()[1] == doctest::Approx(1.0f / s1));
  CHECK(second->weight.data()[0] == doctest::Approx(s0));
  CHECK(second->weight.data()[1] == doctest::Approx(-4.0f * s1));
  CHECK(second->bias.data()[0] == 0.25f);  // the second layer's bias is untouched
  // Both ranges are now sqrt(r1·r2) = sqrt(2) for each channel.
  const std::vector<PairRanges> ranges = pair_ranges(model);
  for (int c = 0; c < 2; ++c) {
    CHECK(ranges[0].first[c] == doctest::Approx(std::sqrt(2.0f)));
    CHECK(ranges[0].second[c] == doctest::Approx(std::sqrt(2.0f)));
  }
  CHECK(report.sweeps <= 2);  // one pair: the first sweep equalizes, the second confirms
}

TEST_CASE("a batch norm after the first conv carries the scale: γ and β divided by s, the conv untouched") {
  Generator generator(2);
  auto conv = std::make_shared<nn::Conv2d>(1, 2, 1, Conv2dOptions{}, false, generator);
  auto bn = std::make_shared<nn::BatchNorm2d>(2);
  auto next = std::make_shared<nn::Conv2d>(2, 1, 1, Conv2dOptions{}, false, generator);
  conv->weight = Tensor::from_vector({2, 1, 1, 1}, {1.0f, 1.0f});
  bn->weight = Tensor::from_vector({2}, {3.0f, -1.0f});  // folded ranges |γ|/σ: 3/√(4+eps), 1/√(1+eps)
  bn->bias = Tensor::from_vector({2}, {0.5f, 0.5f});
  bn->running_var = Tensor::from_vector({2}, {4.0f, 1.0f});
  next->weight = Tensor::from_vector({1, 2, 1, 1}, {0.5f, 2.0f});
  nn::Sequential model({conv, bn, std::make_shared<nn::ReLU>(), next});
  model.eval();
  const float r1_0 = 3.0f / std::sqrt(4.0f + bn->eps), s0 = std::sqrt(r1_0 / 0.5f);
  equalize(model);
  CHECK(conv->weight.to_vector() == std::vector<float>{1.0f, 1.0f});
  CHECK(bn->weight.data()[0] == doctest::Approx(3.0f / s0));
  CHECK(bn->bias.data()[0] == doctest::Approx(0.5f / s0));
  CHECK(next->weight.data()[0] == doctest::Approx(0.5f * s0));
}

TEST_CASE("high-bias absorption, by hand: c = max(0, β − 3|γ|) leaves the batch norm for the next layer") {
  Generator generator(3);
  for (const bool next_has_bn : {false, true}) {
    CAPTURE(next_has_bn);
    auto conv = std::make_shared<nn::Conv2d>(1, 2, 1, Conv2dOptions{}, false, generator);
    auto bn = std::make_shared<nn::BatchNorm2d>(2);
    auto next = std::make_shared<nn::Conv2d>(2, 1, 1, Conv2dOptions{}, !next_has_bn, generator);
    auto next_bn = std::make_shared<nn::BatchNorm2d>(1);
    conv->weight = Tensor::from_vector({2, 1, 1, 1}, {1.0f, 1.0f});
    bn->weight = Tensor::from_vector({2}, {1.0f, -1.0f});
    bn->bias = Tensor::from_vector({2}, {5.0f, 0.5f});  // c = (5 − 3, max(0, 0.5 − 3)) = (2, 0)
    next->weight = Tensor::from_vector({1, 2, 1, 1}, {0.5f, 2.0f});
    if (!next_has_bn) next->bias = Tensor::from_vector({1}, {0.25f});
    std::vector<nn::ModulePtr> layers{conv, bn, std::make_shared<nn::ReLU>(), next};
    if (next_has_bn) layers.push_back(next_bn);
    nn::Sequential model(layers);
    model.eval();
    NoGradGuard no_grad;
    // Inputs in [−1, 1]: channel 0's pre-activation stays in [4, 6], above c: exact.
    const Tensor x = Tensor::uniform({4, 1, 3, 3}, generator, -1.0f, 1.0f);
    const Tensor before = model.forward(x);
    const HighBiasReport report = absorb_high_bias(model);
    REQUIRE(report.pairs.size() == 1);
    CHECK(report.pairs[0].channels == 1);
    CHECK(report.pairs[0].largest == doctest::Approx(2.0f));
    CHECK(bn->bias.data()[0] == doctest::Approx(3.0f));
    CHECK(bn->bias.data()[1] == 0.5f);
    if (next_has_bn)  // K = 0.5 · 2 moves the running mean down instead
      CHECK(next_bn->running_mean.data()[0] == doctest::Approx(-1.0f));
    else
      CHECK(next->bias.data()[0] == doctest::Approx(0.25f + 0.5f * 2.0f));
    const Tensor after = model.forward(x);
    for (int64_t i = 0; i < after.numel(); ++i)
      CHECK(after.data()[i] == doctest::Approx(before.data()[i]).epsilon(1e-5));
  }
  // No ReLU between the layers: no range to gain, nothing moves.
  auto conv = std::make_shared<nn::Conv2d>(1, 2, 1, Conv2dOptions{}, false, generator);
  auto bn = std::make_shared<nn::BatchNorm2d>(2);
  bn->bias = Tensor::from_vector({2}, {5.0f, 5.0f});
  nn::Sequential linear_path(
      {conv, bn, std::make_shared<nn::Conv2d>(2, 1, 1, Conv2dOptions{}, true, generator)});
  CHECK(absorb_high_bias(linear_path).pairs.empty());
  CHECK(bn->bias.data()[0] == 5.0f);
}

namespace {

nn::ModulePtr layer_list(Generator& generator) {
  // Every pairing kind: conv-bn-relu-maxpool-conv (grouped), avgpool, 1x1 conv, adaptive
  // pool + flatten + dropout into a linear, linear-relu-linear (the agreement test's layer list).
  const auto pool = Pool2dOptions::square(2);
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(1, 8, 3, Conv2dOptions::square(1, 1), true, generator),
      std::make_shared<nn::BatchNorm2d>(8), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::MaxPool2d>(pool),
      std::make_shared<nn::Conv2d>(8, 16, 3, Conv2dOptions::square(1, 1, 1, 2), true, generator),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::AvgPool2d>(pool),
      std::make_shared<nn::Conv2d>(16, 16, 1, Conv2dOptions{}, true, generator),
      std::make_shared<nn::AdaptiveAvgPool2d>(2, 2), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Dropout>(0.1f, 5), std::make_shared<nn::Linear>(64, 32, true, generator),
      std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(32, 10, true, generator)});
}

// Random batch-norm statistics and uneven channel scales, so equalization has work to do.
void perturb(nn::Module& model, Generator& generator) {
  for (const auto& [name, m] : model.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(m)) {
      for (int64_t c = 0; c < bn->channels; ++c) {
        bn->weight.data()[c] = 0.2f + 3.0f * generator.uniform();
        bn->bias.data()[c] = generator.uniform() - 0.5f;
        bn->running_mean.data()[c] = 0.3f * (generator.uniform() - 0.5f);
        bn->running_var.data()[c] = 0.1f + generator.uniform();
      }
    } else if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) {
      const int64_t row = conv->weight.numel() / conv->out_channels;
      for (int64_t o = 0; o < conv->out_channels; ++o) {
        const float gain = std::exp(3.0f * (generator.uniform() - 0.5f));
        for (int64_t k = 0; k < row; ++k) conv->weight.data()[o * row + k] *= gain;
      }
    }
}

}  // namespace

TEST_CASE(
    "equalization keeps the float function and equalizes every pair's ranges, on the zoo and a layer list") {
  struct Case {
    const char* name;
    std::size_t pairs;
    Shape input;
  };
  for (const Case& c : {Case{"lenet", 3, {4, 1, 28, 28}}, Case{"jermmy", 2, {4, 1, 28, 28}},
                        Case{"resnet8", 3, {4, 1, 28, 28}}, Case{"resnet20", 9, {2, 1, 28, 28}},
                        Case{"layers", 4, {4, 1, 16, 16}}}) {
    const std::string model_name = c.name;
    CAPTURE(model_name);
    Generator generator(7);
    nn::ModulePtr model =
        std::string(c.name) == "layers" ? layer_list(generator) : nn::build_zoo_model(c.name, generator);
    perturb(*model, generator);
    model->eval();
    NoGradGuard no_grad;
    const Tensor x = Tensor::randn(c.input, generator);
    const std::vector<float> before = model->forward(x).to_vector();
    const std::vector<PairRanges> unequal = pair_ranges(*model);
    const EqualizeReport report = equalize(*model);
    CHECK(report.pairs.size() == c.pairs);
    CHECK(report.largest_change <= 1e-4);
    const std::vector<float> after = model->forward(x).to_vector();
    float largest = 0, difference = 0;
    for (std::size_t i = 0; i < before.size(); ++i) {
      largest = std::max(largest, std::fabs(before[i]));
      difference = std::max(difference, std::fabs(after[i] - before[i]));
    }
    CHECK(difference <= 1e-5f * largest);
    double spread_before = 0, spread_after = 0;  // largest ratio between a pair's two ranges
    const std::vector<PairRanges> equal = pair_ranges(*model);
    for (std::size_t p = 0; p < equal.size(); ++p)
      for (std::size_t i = 0; i < equal[p].first.size(); ++i) {
        spread_before =
            std::max(spread_before,
                     std::fabs(std::log(static_cast<double>(unequal[p].first[i]) / unequal[p].second[i])));
        spread_after = std::max(
            spread_after, std::fabs(std::log(static_cast<double>(equal[p].first[i]) / equal[p].second[i])));
      }
    CHECK(spread_before > 0.1);
    CHECK(spread_after < 2e-4);
    MESSAGE(model_name, ": ", report.pairs.size(), " pairs, ", report.sweeps,
            " sweeps; largest log range ratio ", spread_before, " -> ", spread_after, "; output change ",
            difference / largest, " relative");
  }
}

TEST_CASE("equalization refuses a model already prepared for quantization") {
  Generator generator(3);
  nn::ModulePtr model = nn::build_zoo_model("lenet", generator);
  auto prepared = prepare_qat(model, parse_quant_spec(nullptr, "t.json"));
  CHECK_THROWS_WITH_AS(equalize(*prepared), doctest::Contains("prepared for quantization"), Error);
}
