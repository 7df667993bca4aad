// The ReLU fused into the quantizer (Note [ReLU in the quantizer], quant/fake_quantize.cpp)
// against the two ops it replaces, relu then fake quantization: the same values, input
// gradients, scale and zero-point gradients and observer statistics, bit for bit — for the
// plain and learnable ops, per tensor and per channel, and for the FakeQuantize module over
// several training steps with each kind of activation observer and in eval.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "quant/fake_quantize.h"
#include "quant/fake_quantize_module.h"
#include "tests/gradcheck.h"

using namespace qforge;
using namespace qforge::quant;

namespace {

std::vector<float> values_of(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

// A leaf over ±6 with the values where a ReLU decides: exact zeros of both signs, the
// smallest positive and negative floats, and values a hair either side of 0.
Tensor activation_leaf(const Shape& shape, uint64_t seed) {
  Tensor x = testing::random_leaf(shape, seed, -6.0f, 6.0f);
  const float special[] = {
      0.0f,  -0.0f, std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::denorm_min(),
      1e-7f, -1e-7f};
  for (int64_t i = 0; i < x.numel(); i += 97) x.data()[i] = special[(i / 97) % 6];
  return x;
}

struct Case {
  Shape shape;
  int64_t axis;  // -1: per tensor
  int bits;
  bool is_signed;
};

const Case kCases[] = {
    {{8, 40, 26, 26}, -1, 4, false},  // jermmy's first activation, 8 images: past the blocks and grain
    {{4, 16, 13, 13}, 1, 8, false},   // per channel on axis 1
    {{37, 1031}, 1, 3, true},         // many odd channels, signed grid (zero point inside)
    {{1000}, -1, 8, true},            // below the parallel grain
};

}  // namespace

TEST_CASE("relu fused into fake_quantize: values and gradient are relu's then fake_quantize's, bit for bit") {
  for (const Case& c : kCases) {
    CAPTURE(c.shape);
    const QuantRange range = quant_range(c.bits, c.is_signed);
    const int64_t extent = c.axis < 0 ? 1 : c.shape[c.axis];
    QuantParams params{{}, {}, c.axis};
    for (int64_t i = 0; i < extent; ++i) {
      params.scale.push_back(4.0f / static_cast<float>(range.levels()) *
                             (0.5f + static_cast<float>(i % 5) / 5.0f));
      params.zero_point.push_back(range.quant_min + (i * 3) % (range.levels() / 2 + 1));
    }
    Tensor fused_x = activation_leaf(c.shape, 7), plain_x = activation_leaf(c.shape, 7);
    Tensor fused = fake_quantize(fused_x, params, range, /*relu=*/true);
    Tensor plain = fake_quantize(relu(plain_x), params, range);
    CHECK(values_of(fused) == values_of(plain));
    Generator generator(8);
    Tensor g = Tensor::uniform(c.shape, generator, -1.5f, 1.5f);
    fused.backward(g);
    plain.backward(g);
    CHECK(values_of(fused_x.grad()) == values_of(plain_x.grad()));
    int64_t passed = 0;
    for (float v : values_of(fused_x.grad())) passed += v != 0.0f;
    CHECK(passed > 0);  // both the ReLU's and the clamp's zeros are exercised
    CHECK(passed < fused_x.numel() / 2);
    // Without gradients (evaluation) the same values, and no mask.
    NoGradGuard no_grad;
    CHECK(values_of(fake_quantize(fused_x, params, range, true)) == values_of(plain));
  }
}

TEST_CASE("relu fused into fake_quantize_learnable: values, dx, d_scale and d_zero equal the two ops") {
  for (const Case& c : kCases) {
    CAPTURE(c.shape);
    const QuantRange range = quant_range(c.bits, c.is_signed);
    const int64_t extent = c.axis < 0 ? 1 : c.shape[c.axis];
    std::vector<float> scales, zeros;
    for (int64_t i = 0; i < extent; ++i) {
      scales.push_back(4.0f / static_cast<float>(range.levels()) * (0.5f + static_cast<float>(i % 5) / 5.0f));
      zeros.push_back(static_cast<float>(range.quant_min + (i * 3) % (range.levels() / 2 + 1)) + 0.3f);
    }
    const float factor = lsq_gradient_scale(c.shape[0], range);
    Generator generator(9);
    Tensor g = Tensor::uniform(c.shape, generator, -1.5f, 1.5f);
    std::vector<float> results[2][4];  // fused, plain: y, dx, d_scale, d_zero
    for (int run = 0; run < 2; ++run) {
      Tensor x = activation_leaf(c.shape, 7);
      Tensor scale = Tensor::from_vector({extent}, scales).set_requires_grad(true);
      Tensor zero = Tensor::from_vector({extent}, zeros).set_requires_grad(true);
      Tensor y = run == 0 ? fake_quantize_learnable(x, scale, zero, c.axis, range, factor, /*relu=*/true)
                          : fake_quantize_learnable(relu(x), scale, zero, c.axis, range, factor);
      y.backward(g);
      results[run][0] = values_of(y);
      results[run][1] = values_of(x.grad());
      results[run][2] = values_of(scale.grad());
      results[run][3] = values_of(zero.grad());
    }
    for (int k = 0; k < 4; ++k) CHECK(results[0][k] == results[1][k]);
    int64_t nonzero = 0;
    for (float v : results[0][2]) nonzero += v != 0.0f;
    CHECK(nonzero > 0);
  }
}

TEST_CASE("FakeQuantize::forward_relu equals forward(relu(x)) over training steps, for every observer kind") {
  struct Setup {
    const char* name;
    QuantizerSpec spec;
  };
  const QuantScheme activation{.bits = 4, .is_signed = false, .symmetric = false};
  const Setup setups[] = {
      {"moving_average", {.scheme = activation, .observer = {ObserverKind::moving_average}}},
      {"minmax", {.scheme = activation, .observer = {ObserverKind::minmax}}},
      {"histogram", {.scheme = activation, .observer = {ObserverKind::histogram}}},
      {"histogram, learnable (LSQ)",
       {.scheme = activation, .observer = {ObserverKind::histogram}, .is_learnable = true}},
      {"minmax, learnable, signed 8 bits",
       {.scheme = {.bits = 8, .is_signed = true}, .observer = {ObserverKind::minmax}, .is_learnable = true}},
  };
  for (const Setup& setup : setups) {
    CAPTURE(setup.name);
    FakeQuantize fused(setup.spec, 1), plain(setup.spec, 1);
    fused.train(), plain.train();
    for (int step = 0; step < 4; ++step) {
      CAPTURE(step);
      if (step == 3) fused.eval(), plain.eval();  // settled: no observer, the parameters as trained
      const Shape shape{6, 8, 13, 13};
      Tensor fused_x = activation_leaf(shape, 20 + step), plain_x = activation_leaf(shape, 20 + step);
      // Each step's values reach further, so the observers move.
      for (int64_t i = 0; i < fused_x.numel(); ++i)
        fused_x.data()[i] *= 1.0f + 0.3f * step, plain_x.data()[i] *= 1.0f + 0.3f * step;
      Tensor a = fused.forward_relu(fused_x), b = plain.forward(relu(plain_x));
      CHECK(values_of(a) == values_of(b));
      Generator generator(30 + step);
      Tensor g = Tensor::uniform(shape, generator, -1.0f, 1.0f);
      for (auto* m : {&fused, &plain}) m->zero_grad();
      a.backward(g);
      b.backward(g);
      CHECK(values_of(fused_x.grad()) == values_of(plain_x.grad()));
      const auto fused_state = fused.state_dict(), plain_state = plain.state_dict();
      REQUIRE(fused_state.size() == plain_state.size());
      for (const auto& entry : plain_state) {  // not a structured binding: CAPTURE's lambda reads it
        CAPTURE(entry.first);
        CHECK(values_of(fused_state.at(entry.first)) == values_of(entry.second));
      }
      const auto fused_parameters = fused.parameters(), plain_parameters = plain.parameters();
      for (std::size_t k = 0; k < plain_parameters.size(); ++k)
        if (plain_parameters[k].grad().defined())
          CHECK(values_of(fused_parameters[k].grad()) == values_of(plain_parameters[k].grad()));
    }
    // Fake quantization off: the ReLU alone, with its gradient.
    fused.enable_fake_quant(false), plain.enable_fake_quant(false);
    Tensor fused_x = activation_leaf({100}, 40), plain_x = activation_leaf({100}, 40);
    Tensor a = fused.forward_relu(fused_x), b = plain.forward(relu(plain_x));
    CHECK(values_of(a) == values_of(b));
    a.backward(Tensor::ones({100}));
    b.backward(Tensor::ones({100}));
    CHECK(values_of(fused_x.grad()) == values_of(plain_x.grad()));
  }
}
