// Every fast op against its reference twin (core/kernels/reference.h), ggml's
// test-backend-ops style: one table of cases per op family, with shapes past the
// parallel grain (kParallelGrain = 32K elements) and the tiled/2×2 fast paths, odd sizes,
// ties and NaNs. Forward outputs and gradients are compared.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/kernels/reference.h"
#include "core/ops.h"
#include "core/threading.h"
#include "tests/gradcheck.h"

using namespace qforge;
namespace reference = qforge::kernels::reference;

namespace {

// Values on a coarse grid (many ties), with a NaN every `nan_every` elements (0: none).
Tensor grid_leaf(const Shape& shape, uint64_t seed, int64_t nan_every) {
  Generator generator(seed);
  Tensor x = Tensor::uniform(shape, generator, -4.0f, 4.0f);
  float* p = x.data();
  for (int64_t i = 0; i < x.numel(); ++i) {
    p[i] = std::round(p[i] * 2.0f) / 2.0f;
    if (nan_every > 0 && i % nan_every == nan_every / 2) p[i] = std::numeric_limits<float>::quiet_NaN();
  }
  x.set_requires_grad(true);
  return x;
}

// Equal as bits would be, NaN equal to NaN.
bool same_floats(const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

}  // namespace

TEST_CASE("max_pool2d: every fast path (2x2, tiled, general) equals the reference; ties and NaNs too") {
  struct Case {
    Shape input;
    Pool2dOptions options;
    int64_t nan_every;
  };
  const Case cases[] = {
      {{8, 32, 28, 28}, Pool2dOptions::square(2), 0},   // 2x2 path, past the grain (200K)
      {{8, 32, 28, 28}, Pool2dOptions::square(2), 37},  // with NaNs
      {{2, 8, 28, 28}, Pool2dOptions::square(2), 2},    // two NaNs per window: the last wins
      {{2, 8, 27, 27}, Pool2dOptions::square(3), 3},
      {{3, 5, 9, 11}, Pool2dOptions::square(2), 0},          // odd sizes: the last row/column dropped
      {{7, 33, 10, 10}, Pool2dOptions::square(2), 41},       // many small planes, NaNs among them
      {{4, 40, 27, 27}, Pool2dOptions::square(3), 29},       // tiled 3x3 past the grain
      {{2, 3, 12, 10}, {3, 2, 3, 2, 0, 0, 1, 1}, 5},         // tiled, not square
      {{4, 16, 28, 28}, Pool2dOptions::square(3, 2, 1), 0},  // general: stride 2, padding 1
      {{2, 7, 13, 17}, {3, 3, 2, 1, 1, 1, 2, 1}, 11},        // general: dilation, NaNs
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    Tensor x = grid_leaf(c.input, 3, c.nan_every);
    Tensor y = max_pool2d(x, c.options);
    const int64_t planes = c.input[0] * c.input[1], out_height = y.size(2), out_width = y.size(3);
    const Pool2dOptions& o = c.options;
    std::vector<float> expected(y.numel());
    std::vector<int32_t> argmax(y.numel());
    reference::max_pool2d(expected.data(), argmax.data(), x.data(), planes, c.input[2], c.input[3],
                          out_height, out_width,
                          {o.kernel_height, o.kernel_width, o.stride_height, o.stride_width, o.padding_height,
                           o.padding_width, o.dilation_height, o.dilation_width});
    CHECK(same_floats(y.data(), expected.data(), y.numel()));
    // The gradient lands where the argmax points: compare with the reference's scatter.
    Generator generator(9);
    Tensor g = Tensor::uniform(y.shape(), generator, 0.5f, 1.5f);
    y.backward(g);
    std::vector<float> dx(x.numel(), 0.0f);
    const int64_t plane = c.input[2] * c.input[3], out_plane = out_height * out_width;
    for (int64_t i = 0; i < y.numel(); ++i) dx[i / out_plane * plane + argmax[i]] += g.data()[i];
    CHECK(same_floats(x.grad().data(), dx.data(), x.numel()));
  }
}

TEST_CASE(
    "relu_max_pool2d: the fused inference pass equals relu then max_pool2d, bit for bit; NaNs and -0 too") {
  struct Case {
    Shape input;
    Pool2dOptions options;
    int64_t nan_every;
  };
  const Case cases[] = {
      {{8, 40, 26, 26}, Pool2dOptions::square(2), 0},   // jermmy's first pool, past the grain: fused
      {{8, 40, 26, 26}, Pool2dOptions::square(2), 7},   // NaNs: relu makes them 0 before the max
      {{3, 5, 11, 11}, Pool2dOptions::square(2), 3},    // odd sizes: the last row and column dropped
      {{16, 67, 10, 10}, Pool2dOptions::square(2), 9},  // lenet's second pool: small planes
      {{2, 4, 9, 9}, Pool2dOptions::square(3), 5},      // not 2x2: the two ops
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    Tensor x = grid_leaf(c.input, 4, c.nan_every);
    for (int64_t i = 0; i < x.numel(); i += 13) x.data()[i] = -0.0f;  // relu(-0) is +0 in both
    Tensor expected = max_pool2d(relu(x.detach()), c.options);
    {
      NoGradGuard no_grad;
      Tensor fused = relu_max_pool2d(x, c.options);
      REQUIRE(fused.shape() == expected.shape());
      int64_t different = 0;  // as bits: +0 and -0 differ
      for (int64_t i = 0; i < fused.numel(); ++i)
        different += std::memcmp(fused.data() + i, expected.data() + i, sizeof(float)) != 0;
      CHECK(different == 0);
    }
    // With gradients wanted it is the two ops, gradient included.
    Tensor y = relu_max_pool2d(x, c.options);
    CHECK(same_floats(y.data(), expected.data(), y.numel()));
    y.backward(Tensor::ones(y.shape()));
    Tensor x2 = x.detach().clone().set_requires_grad(true);
    max_pool2d(relu(x2), c.options).backward(Tensor::ones(y.shape()));
    CHECK(same_floats(x.grad().data(), x2.grad().data(), x.numel()));
  }
}

TEST_CASE(
    "max_pool2d_blocked: the reference's values on the blocked layout, bit for bit; ties, -0 and NaNs") {
  const int64_t block = qforge::testing::channel_block_or_note();
  if (block == 0) return;
  struct Case {
    Shape input;
    Pool2dOptions options;
    int64_t nan_every;
  };
  const int64_t c2 = 2 * block;
  const Case cases[] = {
      {{8, c2, 28, 28}, Pool2dOptions::square(2), 0},           // lenet's first pool: tiled, vector path
      {{8, c2, 28, 28}, Pool2dOptions::square(2), 37},          // with NaNs
      {{2, block, 28, 28}, Pool2dOptions::square(2), 2},        // two NaNs per window: the last wins
      {{3, c2, 9, 11}, Pool2dOptions::square(2), 5},            // odd sizes: the last row/column dropped
      {{2, block, 27, 27}, Pool2dOptions::square(3), 29},       // tiled 3x3
      {{2, c2, 12, 10}, {3, 2, 3, 2, 0, 0, 1, 1}, 5},           // tiled, not square
      {{4, block, 28, 28}, Pool2dOptions::square(3, 2, 1), 7},  // general: stride 2, padding 1
      {{2, c2, 13, 17}, {3, 3, 2, 1, 1, 1, 2, 1}, 11},          // general: dilation
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    NoGradGuard no_grad;
    Tensor x = grid_leaf(c.input, 5, c.nan_every);
    for (int64_t i = 0; i < x.numel(); i += 13) x.data()[i] = -0.0f;  // ties of -0 and +0: the first wins
    const Pool2dOptions& o = c.options;
    const Tensor pooled = from_channel_blocked(max_pool2d_blocked(to_channel_blocked(x), o));
    const int64_t planes = c.input[0] * c.input[1], out_height = pooled.size(2), out_width = pooled.size(3);
    std::vector<float> expected(pooled.numel());
    std::vector<int32_t> argmax(pooled.numel());
    reference::max_pool2d(expected.data(), argmax.data(), x.data(), planes, c.input[2], c.input[3],
                          out_height, out_width,
                          {o.kernel_height, o.kernel_width, o.stride_height, o.stride_width, o.padding_height,
                           o.padding_width, o.dilation_height, o.dilation_width});
    REQUIRE(static_cast<std::size_t>(pooled.numel()) == expected.size());
    int64_t different = 0;  // as bits: +0 and -0 differ
    for (int64_t i = 0; i < pooled.numel(); ++i)
      different += std::memcmp(pooled.data() + i, expected.data() + i, sizeof(float)) != 0;
    CHECK(different == 0);
  }
  NoGradGuard no_grad;
  CHECK_THROWS_WITH(max_pool2d_blocked(Tensor::zeros({2, block, 8, 8}), Pool2dOptions::square(2)),
                    doctest::Contains("expected (N,C/B,H,W,B)"));
}

TEST_CASE("adaptive_avg_pool2d_blocked: adaptive_avg_pool2d's values from the blocked layout, bit for bit") {
  const int64_t block = qforge::testing::channel_block_or_note();
  if (block == 0) return;
  struct Case {
    Shape input;
    int64_t out_height, out_width;
  };
  const Case cases[] = {
      {{8, 4 * block, 7, 7}, 1, 1},  // the ResNets' global pool, past the grain
      {{3, block, 9, 11}, 2, 3},     // uneven, overlapping windows
      {{2, 2 * block, 5, 5}, 5, 5},  // one value per window
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    NoGradGuard no_grad;
    Generator generator(6);
    const Tensor x = Tensor::randn(c.input, generator);  // not a grid: every rounding of the sums counts
    const Tensor expected = adaptive_avg_pool2d(x, c.out_height, c.out_width);
    const Tensor got = adaptive_avg_pool2d_blocked(to_channel_blocked(x), c.out_height, c.out_width);
    REQUIRE(got.shape() == expected.shape());
    CHECK(std::memcmp(got.data(), expected.data(), sizeof(float) * static_cast<std::size_t>(got.numel())) ==
          0);
  }
}

TEST_CASE("batch_norm: forward and backward equal the double-precision reference, training and eval") {
  struct Case {
    Shape input;
    bool is_training, affine;
  };
  const Case cases[] = {
      {{64, 16, 28, 28}, true, true},  // 800K elements, past the grain
      {{64, 16, 28, 28}, false, true}, {{5, 3, 7, 9}, true, false}, {{300, 120}, true, true},  // (N,C)
      {{2, 70, 1, 1}, true, true},     {{256, 200}, false, false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    CAPTURE(c.is_training);
    const int64_t batch = c.input[0], channels = c.input[1],
                  spatial = c.input.size() == 4 ? c.input[2] * c.input[3] : 1;
    Tensor x = testing::random_leaf(c.input, 21, -3.0f, 5.0f);
    Tensor gamma = c.affine ? testing::random_leaf({channels}, 22, 0.5f, 2.0f) : Tensor();
    Tensor beta = c.affine ? testing::random_leaf({channels}, 23) : Tensor();
    Generator generator(24);
    Tensor running_mean = Tensor::uniform({channels}, generator, -1.0f, 1.0f);
    Tensor running_var = Tensor::uniform({channels}, generator, 0.5f, 2.0f);
    std::vector<double> mean(channels), variance(channels);
    for (int64_t i = 0; i < channels; ++i)
      mean[i] = running_mean.data()[i], variance[i] = running_var.data()[i];
    Tensor y = batch_norm(x, running_mean, running_var, gamma, beta, c.is_training, 0.1f, 1e-5f);
    std::vector<float> expected(x.numel());
    reference::batch_norm_forward(expected.data(), mean.data(), variance.data(), x.data(), batch, channels,
                                  spatial, c.affine ? gamma.data() : nullptr,
                                  c.affine ? beta.data() : nullptr, c.is_training, 1e-5f);
    CHECK(testing::all_close(y.detach(), Tensor::from_vector(c.input, expected), 1e-5, 1e-5));
    Tensor g = Tensor::randn(c.input, generator);
    y.backward(g);
    std::vector<float> dx(x.numel()), dgamma(channels), dbeta(channels);
    reference::batch_norm_backward(dx.data(), dgamma.data(), dbeta.data(), g.data(), x.data(), mean.data(),
                                   variance.data(), batch, channels, spatial,
                                   c.affine ? gamma.data() : nullptr, c.is_training, 1e-5f);
    CHECK(testing::all_close(x.grad(), Tensor::from_vector(c.input, dx), 1e-4, 1e-5));
    if (c.affine) {
      CHECK(testing::all_close(gamma.grad(), Tensor::from_vector({channels}, dgamma), 1e-4, 1e-3));
      CHECK(testing::all_close(beta.grad(), Tensor::from_vector({channels}, dbeta), 1e-4, 1e-3));
    }
  }
}

TEST_CASE("lstm_cell: the vectorized cell equals the libm reference to 1e-6") {
  const int64_t shapes[][2] = {{1, 1}, {3, 17}, {256, 128}, {64, 513}};
  for (const auto& shape : shapes) {
    const int64_t batch = shape[0], hidden = shape[1];
    CAPTURE(hidden);
    Tensor gates = testing::random_leaf({batch, 4 * hidden}, 31, -9.0f, 9.0f);
    Tensor c_prev = testing::random_leaf({batch, hidden}, 32, -3.0f, 3.0f);
    Tensor out = lstm_cell(gates, c_prev);
    std::vector<float> h(batch * hidden), c(batch * hidden), both;
    reference::lstm_cell(h.data(), c.data(), gates.data(), c_prev.data(), batch, hidden);
    for (int64_t b = 0; b < batch; ++b) {
      both.insert(both.end(), h.begin() + b * hidden, h.begin() + (b + 1) * hidden);
      both.insert(both.end(), c.begin() + b * hidden, c.begin() + (b + 1) * hidden);
    }
    CHECK(testing::all_close(out.detach(), Tensor::from_vector({batch, 2 * hidden}, both), 0.0, 1e-6));
  }
}
