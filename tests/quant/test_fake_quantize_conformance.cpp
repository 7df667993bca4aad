// FakeQuantize against PyTorch 1.13 (../shared/reference/torch_quant_vectors.json and
// seed_examples.json): outputs and gradients to 1e-5 relative, quantized integers
// exactly.
#include <doctest/doctest.h>

#include <cmath>

#include "core/ops.h"
#include "quant/fake_quantize.h"
#include "tests/reference.h"

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;

namespace {
Tensor tensor_from(const json& values, const Shape& shape) {
  return Tensor::from_vector(shape, values.get<std::vector<float>>());
}

void check_close(const Tensor& actual, const json& expected, const char* what) {
  std::vector<float> want = expected.get<std::vector<float>>();
  REQUIRE(static_cast<int64_t>(want.size()) == actual.numel());
  for (std::size_t i = 0; i < want.size(); ++i) {
    CAPTURE(what);
    CAPTURE(i);
    CHECK(actual.data()[i] == doctest::Approx(want[i]).epsilon(1e-5).scale(1e-6));
  }
}

// The integer level behind a fake-quantized value: (y/s) + z, which must be integral.
int64_t level_of(float y, float scale, int64_t zero_point) { return std::llround(y / scale) + zero_point; }
}  // namespace

TEST_CASE("fake_quantize per tensor matches PyTorch at 2..8 bits, forward and backward") {
  json reference = qforge::testing::load_reference("torch_quant_vectors.json");
  REQUIRE(reference["fake_quantize_per_tensor"].size() == 7);
  for (const json& c : reference["fake_quantize_per_tensor"]) {
    const int64_t n = c["x"].size();
    CAPTURE(c["bits"].get<int>());
    CAPTURE(c["quant_min"].get<int>());
    Tensor x = tensor_from(c["x"], {n}).set_requires_grad(true);
    QuantParams params{{c["scale"].get<float>()}, {c["zero_point"].get<int64_t>()}, -1};
    QuantRange range{c["quant_min"], c["quant_max"]};
    Tensor y = fake_quantize(x, params, range);
    check_close(y, c["y"], "y");
    std::vector<float> want = c["y"].get<std::vector<float>>();
    for (int64_t i = 0; i < n; ++i)
      CHECK(level_of(y.data()[i], params.scale[0], params.zero_point[0]) ==
            level_of(want[i], params.scale[0], params.zero_point[0]));
    y.backward(tensor_from(c["grad_out"], {n}));
    check_close(x.grad(), c["grad_x"], "grad_x");
  }
}

TEST_CASE("fake_quantize per channel matches PyTorch") {
  json reference = qforge::testing::load_reference("torch_quant_vectors.json");
  REQUIRE(reference["fake_quantize_per_channel"].size() == 2);
  for (const json& c : reference["fake_quantize_per_channel"]) {
    Shape shape(c["shape"].get<std::vector<int64_t>>());
    Tensor x = tensor_from(c["x"], shape).set_requires_grad(true);
    QuantParams params{c["scale"].get<std::vector<float>>(), c["zero_point"].get<std::vector<int64_t>>(),
                       c["axis"].get<int64_t>()};
    Tensor y = fake_quantize(x, params, {c["quant_min"], c["quant_max"]});
    // The file prints these scales to 7 decimals (0.0001498), so its outputs carry the
    // unrounded scale: the integer levels must agree exactly, the values to the
    // precision of the printed scale (half a unit of its last decimal).
    std::vector<float> want = c["y"].get<std::vector<float>>();
    const int64_t per_channel = x.numel() / shape[0];
    for (int64_t i = 0; i < x.numel(); ++i) {
      const int64_t channel = i / per_channel;
      const float sc = params.scale[channel];
      const int64_t z = params.zero_point[channel];
      CAPTURE(i);
      CHECK(level_of(y.data()[i], sc, z) == level_of(want[i], sc, z));
      CHECK(y.data()[i] == doctest::Approx(want[i]).epsilon(0.5e-7 / sc + 1e-6).scale(1e-6));
    }
    y.backward(tensor_from(c["grad_out"], shape));
    check_close(x.grad(), c["grad_x"], "grad_x");
  }
}

TEST_CASE("learnable fake_quantize matches PyTorch, including scale and zero-point gradients") {
  json reference = qforge::testing::load_reference("torch_quant_vectors.json");
  REQUIRE(reference["fake_quantize_learnable"].size() == 2);
  for (const json& c : reference["fake_quantize_learnable"]) {
    const int64_t n = c["x"].size();
    Tensor x = tensor_from(c["x"], {n}).set_requires_grad(true);
    Tensor scale = Tensor::full({1}, c["scale"].get<float>()).set_requires_grad(true);
    Tensor zero_point = Tensor::full({1}, c["zero_point"].get<float>()).set_requires_grad(true);
    Tensor y = fake_quantize_learnable(x, scale, zero_point, -1, {c["quant_min"], c["quant_max"]},
                                       c["grad_factor"].get<float>());
    check_close(y, c["y"], "y");
    y.backward(tensor_from(c["grad_out"], {n}));
    check_close(x.grad(), c["grad_x"], "grad_x");
    CHECK(scale.grad().item() == doctest::Approx(c["grad_scale"].get<double>()).epsilon(1e-5));
    CHECK(zero_point.grad().item() ==
          doctest::Approx(c["grad_zero_point"].get<double>()).epsilon(1e-5).scale(1e-6));
  }
}

TEST_CASE("NVIDIA tensor_quant convention reproduces the seed example") {
  json example = qforge::testing::load_reference("seed_examples.json")["tensor_quant"];
  const int64_t n = example["x"].size();
  Tensor x = tensor_from(example["x"], {n});
  AmaxQuantized q =
      fake_quantize_amax(x, example["amax"].get<float>(), example["num_bits"], example["unsigned"]);
  CHECK(q.scale == doctest::Approx(example["scale"].get<double>()).epsilon(1e-6));
  std::vector<float> levels = example["quant_x"].get<std::vector<float>>();
  for (int64_t i = 0; i < n; ++i) CHECK(q.integer.data()[i] == levels[i]);  // exactly
  check_close(q.fake, example["fake_quant_x"], "fake_quant_x");
}

TEST_CASE("straight-through estimator: gradient passes only inside the range") {
  Tensor x = Tensor::from_vector({5}, {-20.0f, -0.5f, 0.0f, 0.5f, 20.0f}).set_requires_grad(true);
  Tensor y = fake_quantize(x, {{0.1f}, {0}, -1}, quant_range(8, true));
  sum(y).backward();
  CHECK(x.grad().to_vector() == std::vector<float>{0, 1, 1, 1, 0});
  CHECK(y.data()[0] == doctest::Approx(-12.8f));
  CHECK(y.data()[4] == doctest::Approx(12.7f));
}

TEST_CASE("quant_range covers 1..16 bits, signed, unsigned, reduced and narrow") {
  CHECK(quant_range(8, false).quant_max == 255);
  CHECK(quant_range(8, true).quant_min == -128);
  CHECK(quant_range(8, false, true).quant_max == 127);
  CHECK(quant_range(8, true, true).quant_min == -64);
  CHECK(quant_range(8, true, false, true).quant_min == -127);
  CHECK(quant_range(16, true).quant_max == 32767);
  CHECK(quant_range(1, false).quant_max == 1);
  CHECK(quant_range(4, true).quant_min == -8);
  CHECK_THROWS_AS(quant_range(17, true), Error);
  CHECK_THROWS_AS(quant_range(0, false), Error);
}
