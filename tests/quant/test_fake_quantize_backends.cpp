// fake_quantize's parallel, per-channel-hoisted kernel against its element-at-a-time
// reference twin (fake_quantize_reference), on shapes past its 16K-element blocks and the
// parallel grain: outputs bit for bit, and the straight-through mask through backward.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/ops.h"
#include "quant/fake_quantize.h"
#include "tests/gradcheck.h"

using namespace qforge;
using namespace qforge::quant;

TEST_CASE(
    "fake_quantize: the parallel kernel equals the reference twin past every block, per tensor and channel") {
  struct Case {
    Shape shape;
    int64_t axis;  // -1: per tensor
    int bits;
    bool is_signed;
  };
  const Case cases[] = {
      {{100003}, -1, 8, false},         // 7 blocks of 16K and a tail, past the grain
      {{64, 16, 28, 28}, -1, 4, true},  // 800K
      {{64, 16, 28, 28}, 1, 8, true},   // per channel on axis 1 (activations' layout)
      {{128, 3, 5, 5}, 0, 2, true},     // per channel on axis 0 (weights)
      {{37, 1031}, 1, 7, false},        // many channels, odd
      {{1000}, -1, 1, false},           // 1 bit
  };
  for (const Case& c : cases) {
    CAPTURE(c.shape);
    CAPTURE(c.axis);
    Tensor x = testing::random_leaf(c.shape, 41, -6.0f, 6.0f);
    const QuantRange range = quant_range(c.bits, c.is_signed);
    const int64_t extent = c.axis < 0 ? 1 : c.shape[c.axis];
    QuantParams params{{}, {}, c.axis};
    Generator generator(42);
    for (int64_t i = 0; i < extent; ++i) {
      // a grid covering about half of ±6, so values fall on both sides of the clamp
      params.scale.push_back(6.0f / static_cast<float>(range.levels()) *
                             (0.5f + static_cast<float>(i % 7) / 7.0f));
      params.zero_point.push_back(range.quant_min + (i * 5) % range.levels());
    }
    Tensor y = fake_quantize(x, params, range);
    std::vector<float> expected(x.numel());
    std::vector<uint8_t> mask(x.numel());
    fake_quantize_reference(expected.data(), mask.data(), x.data(), c.shape, params, range);
    int64_t different = 0, inside = 0;
    for (int64_t i = 0; i < x.numel(); ++i) different += y.data()[i] != expected[i], inside += mask[i];
    CHECK(different == 0);
    CHECK(inside > 0);  // the case exercises both sides of the mask
    CHECK(inside < x.numel());
    Tensor g = Tensor::uniform(c.shape, generator, 0.5f, 1.5f);
    y.backward(g);
    different = 0;
    for (int64_t i = 0; i < x.numel(); ++i) different += x.grad().data()[i] != (mask[i] ? g.data()[i] : 0.0f);
    CHECK(different == 0);
  }
}

TEST_CASE("lsq_gradient_scale: PyTorch's 1/sqrt(N*quant_max), finite on the signed 1-bit grid") {
  CHECK(lsq_gradient_scale(100, quant_range(8, true)) == doctest::Approx(1.0 / std::sqrt(100.0 * 127)));
  CHECK(lsq_gradient_scale(100, quant_range(4, false)) == doctest::Approx(1.0 / std::sqrt(100.0 * 15)));
  // {-1, 0}: quant_max is 0; the largest magnitude 1 stands in.
  CHECK(lsq_gradient_scale(100, quant_range(1, true)) == doctest::Approx(0.1));
}
