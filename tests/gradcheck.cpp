#include "tests/gradcheck.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/autograd.h"
#include "core/ops/conv.h"
#include "core/random.h"

namespace qforge::testing {

namespace {
double weighted_sum(const Tensor& output, const std::vector<float>& weights) {
  double total = 0;
  for (int64_t i = 0; i < output.numel(); ++i) total += static_cast<double>(output.data()[i]) * weights[i];
  return total;
}
}  // namespace

bool check_gradients(const TensorFunction& function, const std::vector<Tensor>& inputs,
                     const GradcheckOptions& options) {
  Generator generator(options.seed);
  for (const Tensor& input : inputs)
    if (input.defined() && input.requires_grad()) const_cast<Tensor&>(input).zero_grad();
  Tensor output = function(inputs);
  std::vector<float> weights(output.numel());
  for (float& w : weights) w = generator.uniform(-1.0f, 1.0f);
  REQUIRE_MESSAGE(output.requires_grad(), "gradcheck: output does not require grad");
  output.backward(Tensor::from_vector(output.shape(), weights));

  bool ok = true;
  for (std::size_t t = 0; t < inputs.size(); ++t) {
    Tensor input = inputs[t];
    if (!input.defined() || !input.requires_grad()) continue;
    Tensor analytic = input.grad();
    REQUIRE_MESSAGE(analytic.defined(), "gradcheck: input ", t, " received no gradient");
    float* values = input.data();
    for (int64_t i = 0; i < input.numel() && ok; ++i) {
      const float original = values[i];
      NoGradGuard no_grad;
      // L at x + d (the float actually stored; with a power-of-two step it is exact).
      auto loss_at = [&](double d) {
        values[i] = static_cast<float>(original + d);
        return weighted_sum(function(inputs), weights);
      };
      const double h = options.step;
      const double near = loss_at(h) - loss_at(-h), far = loss_at(2 * h) - loss_at(-2 * h);
      values[i] = original;
      // The five-point stencil: truncation error O(h⁴) instead of the central
      // difference's O(h²), so what is left is float rounding in f.
      const double numeric = (8 * near - far) / (12 * h);
      const double got = analytic.data()[i];
      if (std::abs(got - numeric) >
          options.absolute_tolerance + options.relative_tolerance * std::abs(numeric)) {
        ok = false;
        FAIL_CHECK("gradcheck: input ", t, " ", input.shape(), " element ", i, ": autograd ", got,
                   ", finite difference ", numeric);
      }
    }
  }
  return ok;
}

Tensor random_leaf(const Shape& shape, uint64_t seed, float low, float high) {
  Generator generator(seed);
  Tensor leaf = Tensor::uniform(shape, generator, low, high);
  leaf.set_requires_grad(true);
  return leaf;
}

Tensor distinct_leaf(const Shape& shape, uint64_t seed, float gap) {
  Tensor leaf = Tensor::empty(shape);
  std::vector<int64_t> order(leaf.numel());
  std::iota(order.begin(), order.end(), 0);
  Generator generator(seed);
  for (int64_t i = leaf.numel() - 1; i > 0; --i) std::swap(order[i], order[generator.below(i + 1)]);
  const float center = gap * static_cast<float>(leaf.numel()) / 2;
  for (int64_t i = 0; i < leaf.numel(); ++i) leaf.data()[i] = gap * order[i] - center;
  leaf.set_requires_grad(true);
  return leaf;
}

bool all_close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  REQUIRE(actual.shape() == expected.shape());
  for (int64_t i = 0; i < actual.numel(); ++i) {
    double a = actual.data()[i], b = expected.data()[i];
    if (!(std::abs(a - b) <= atol + rtol * std::abs(b))) {
      FAIL_CHECK("all_close: element ", i, " of ", actual.shape(), ": got ", a, ", expected ", b);
      return false;
    }
  }
  return true;
}

int64_t channel_block_or_note() {
  const int64_t block = channel_block();
  if (block == 0) MESSAGE("this machine's oneDNN has no blocked layout: nothing runs blocked");
  return block;
}

}  // namespace qforge::testing
