// fake_quantize's parallel, per-channel-hoisted kernel against its element-at-a-time
// reference twin (fake_quantize_reference), on shapes past its 16K-element blocks and the
// parallel grain: outputs bit for bit, and the straight-through mask through backward.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/ops.h"
#include "core/threading.h"
#include "quant/fake_quantize.h"
#include "tests/gradcheck.h"

using namespace qforge;
using namespace qforge::quant;

namespace {
// A tensor to fake-quantize: its shape, the axis of its channels, the grid.
struct Case {
  Shape shape;
  int64_t axis;  // -1: per tensor
  int bits;
  bool is_signed;
};
}  // namespace

TEST_CASE(
    "fake_quantize: the parallel kernel equals the reference twin past every block, per tensor and channel") {
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

TEST_CASE(
    "fake_quantize_learnable backward: the blocked parallel kernel against the reference twin, any thread "
    "count") {
  const Case cases[] = {
      {{100003}, -1, 8, false},         // 13 blocks of 8K and a tail, past the grain
      {{64, 16, 28, 28}, -1, 4, true},  // 800K in one scale
      {{64, 16, 28, 28}, 1, 8, true},   // per channel on axis 1: 64 runs of 784 per channel
      {{128, 3, 5, 5}, 0, 2, true},     // per channel on axis 0 (weights)
      {{3, 20000}, 0, 3, false},        // runs of 2 blocks and a tail
      {{37, 1031}, 1, 7, false},        // many channels, runs of 1
      {{1000}, -1, 1, false},           // 1 bit
  };
  const int threads = num_threads();
  for (const Case& c : cases) {
    CAPTURE(c.shape);
    CAPTURE(c.axis);
    const QuantRange range = quant_range(c.bits, c.is_signed);
    const int64_t extent = c.axis < 0 ? 1 : c.shape[c.axis];
    std::vector<float> scales, zeros;
    std::vector<int64_t> levels;
    for (int64_t i = 0; i < extent; ++i) {
      scales.push_back(6.0f / static_cast<float>(range.levels()) * (0.5f + static_cast<float>(i % 7) / 7.0f));
      zeros.push_back(static_cast<float>(range.quant_min + (i * 5) % range.levels()));
      // backward's zero point: z + 0.5 truncated (PyTorch's _get_zero_point_from_tensor with
      // is_forward false), so a negative zero point moves up by one
      levels.push_back(static_cast<int64_t>(zeros.back() + 0.5f));
    }
    Generator generator(43);
    Tensor g = Tensor::uniform(c.shape, generator, -1.5f, 1.5f);
    const float factor = lsq_gradient_scale(c.shape[0], range);
    std::vector<float> results[2][3];  // per thread count: dx, d_scale, d_zero
    for (int run = 0; run < 2; ++run) {
      set_num_threads(run == 0 ? 1 : 2);
      Tensor x = testing::random_leaf(c.shape, 41, -6.0f, 6.0f);
      Tensor scale = Tensor::from_vector({extent}, scales).set_requires_grad(true);
      Tensor zero = Tensor::from_vector({extent}, zeros).set_requires_grad(true);
      fake_quantize_learnable(x, scale, zero, c.axis, range, factor).backward(g);
      results[run][0].assign(x.grad().data(), x.grad().data() + x.numel());
      results[run][1].assign(scale.grad().data(), scale.grad().data() + extent);
      results[run][2].assign(zero.grad().data(), zero.grad().data() + extent);
    }
    set_num_threads(threads);
    for (int k = 0; k < 3; ++k) CHECK(results[0][k] == results[1][k]);  // bit for bit across thread counts

    Tensor x = testing::random_leaf(c.shape, 41, -6.0f, 6.0f);
    std::vector<float> dx(x.numel()), d_scale(extent), d_zero(extent);
    fake_quantize_learnable_backward_reference(dx.data(), d_scale.data(), d_zero.data(), g.data(), x.data(),
                                               c.shape, c.axis, scales.data(), levels.data(), range, factor);
    CHECK(results[0][0] == dx);  // dx is elementwise: identical
    int64_t inside = 0;
    for (float v : dx) inside += v != 0.0f;
    CHECK(inside > 0);  // both sides of the range are exercised
    CHECK(inside < x.numel());
    // The sums differ only in order (16 float lanes per block, blocks in double, against one
    // double sum): within 1e-6 of the largest they could reach, Σ|g|·(range width)·factor per channel.
    const double bound = 1e-6 * static_cast<double>(x.numel()) / static_cast<double>(extent) * 1.5 *
                         static_cast<double>(range.levels()) * factor * 6.0;
    for (int64_t i = 0; i < extent; ++i) {
      CHECK(std::abs(results[0][1][i] - d_scale[i]) <= bound);
      CHECK(std::abs(results[0][2][i] - d_zero[i]) <= bound);
    }
    int64_t nonzero_scale = 0;
    for (float v : d_scale) nonzero_scale += v != 0.0f;
    CHECK(nonzero_scale > 0);
  }
}

TEST_CASE("lsq_gradient_scale: PyTorch's 1/sqrt(N*quant_max), finite on the signed 1-bit grid") {
  CHECK(lsq_gradient_scale(100, quant_range(8, true)) == doctest::Approx(1.0 / std::sqrt(100.0 * 127)));
  CHECK(lsq_gradient_scale(100, quant_range(4, false)) == doctest::Approx(1.0 / std::sqrt(100.0 * 15)));
  // {-1, 0}: quant_max is 0; the largest magnitude 1 stands in.
  CHECK(lsq_gradient_scale(100, quant_range(1, true)) == doctest::Approx(0.1));
}
