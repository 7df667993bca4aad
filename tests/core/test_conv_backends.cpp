// The fast conv paths (oneDNN; the direct grouped kernels) equal the im2col reference path,
// forward and every gradient, to 1e-4 relative (Note [Backends]).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/kernels/conv2d.h"
#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace qforge;
using qforge::testing::all_close;
using qforge::testing::random_leaf;

namespace {
struct Result {
  Tensor y, dx, dw, db;
};

Result run(Backend backend, const Shape& input, const Shape& weight, const Conv2dOptions& options) {
  Tensor x = random_leaf(input, 11), w = random_leaf(weight, 12), b = random_leaf({weight[0]}, 13);
  Tensor y = conv2d(x, w, b, options, backend);
  Generator generator(5);
  y.backward(Tensor::randn(y.shape(), generator));
  return {y.detach(), x.grad(), w.grad(), b.grad()};
}
}  // namespace

TEST_CASE("conv2d: oneDNN equals the reference, forward and backward") {
  struct Case {
    Shape input, weight;
    Conv2dOptions options;
  };
  const Case cases[] = {
      {{4, 1, 28, 28}, {32, 1, 5, 5}, Conv2dOptions::square(1, 2)},          // lenet conv1
      {{3, 40, 13, 13}, {40, 2, 3, 3}, Conv2dOptions::square(1, 0, 1, 20)},  // jermmy conv2
      {{2, 16, 14, 14}, {32, 16, 3, 3}, Conv2dOptions::square(2, 1)},        // resnet downsample
      {{2, 16, 14, 14}, {32, 16, 1, 1}, Conv2dOptions::square(2, 0)},        // projection shortcut
      {{2, 3, 11, 9}, {5, 3, 3, 2}, {2, 1, 1, 0, 2, 1, 1}},                  // odd: stride 2x1, dilation 2x1
      // The direct grouped kernels (conv2d_grouped_applies): padding, uneven group widths,
      // non-square kernels, depthwise, planes shorter and longer than a vector.
      {{2, 12, 9, 7}, {8, 3, 3, 2}, {1, 1, 1, 1, 1, 1, 4}},
      {{3, 8, 10, 10}, {8, 1, 3, 3}, Conv2dOptions::square(1, 1, 1, 8)},
      {{1, 6, 3, 4}, {9, 2, 2, 2}, Conv2dOptions::square(1, 0, 1, 3)},
      {{2, 8, 28, 28}, {16, 2, 5, 5}, Conv2dOptions::square(1, 2, 1, 4)},
  };
  int64_t grouped = 0, first_layers = 0;
  for (const Case& c : cases) {
    CAPTURE(c.input);
    CAPTURE(c.weight);
    const Conv2dOptions& o = c.options;
    const kernels::Conv2dShape shape{c.input[0],       c.input[1],       c.input[2],      c.input[3],
                                     c.weight[0],      c.weight[2],      c.weight[3],     o.stride_height,
                                     o.stride_width,   o.padding_height, o.padding_width, o.dilation_height,
                                     o.dilation_width, o.groups};
    grouped += kernels::conv2d_grouped_applies(shape);
    first_layers += kernels::conv2d_grouped_weights_applies(shape) && !kernels::conv2d_grouped_applies(shape);
    Result fast = run(Backend::fast, c.input, c.weight, c.options);
    Result reference = run(Backend::reference, c.input, c.weight, c.options);
    CHECK(all_close(fast.y, reference.y, 1e-4, 1e-5));
    CHECK(all_close(fast.dx, reference.dx, 1e-4, 1e-5));
    CHECK(all_close(fast.dw, reference.dw, 1e-4, 1e-4));
    CHECK(all_close(fast.db, reference.db, 1e-4, 1e-4));
  }
  CHECK(grouped == 5);       // jermmy's and the four above took the direct kernels
  CHECK(first_layers == 1);  // lenet conv1's weight gradient
}

namespace {
// The grouped kernels' reference twins: plain loops, one output at a time, adding the terms
// in the order the kernels add them (conv2d_grouped.cpp), so outputs must be identical.
// Forward: bias, then every (channel, kh, kw) term, padding terms as w·0.
void forward_twin(std::vector<float>& y, const std::vector<float>& x, const std::vector<float>& w,
                  const std::vector<float>& b, const kernels::Conv2dShape& s) {
  const int64_t ipg = s.in_channels / s.groups, opg = s.out_channels / s.groups;
  const int64_t oh_count = s.out_height(), ow_count = s.out_width();
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t o = 0; o < s.out_channels; ++o)
      for (int64_t oh = 0; oh < oh_count; ++oh)
        for (int64_t ow = 0; ow < ow_count; ++ow) {
          float sum = 0.0f + b[o];
          for (int64_t ci = 0; ci < ipg; ++ci)
            for (int64_t kh = 0; kh < s.kernel_height; ++kh)
              for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
                const int64_t h = oh + kh - s.padding_height, v = ow + kw - s.padding_width;
                const int64_t c = o / opg * ipg + ci;
                const float input = h >= 0 && h < s.in_height && v >= 0 && v < s.in_width
                                        ? x[((n * s.in_channels + c) * s.in_height + h) * s.in_width + v]
                                        : 0.0f;
                sum += w[((o * ipg + ci) * s.kernel_height + kh) * s.kernel_width + kw] * input;
              }
          y[((n * s.out_channels + o) * oh_count + oh) * ow_count + ow] = sum;
        }
}

// Backward-data: from 0, every (output channel of the group, kh, kw) term, outside ones as w·0.
void backward_data_twin(std::vector<float>& dx, const std::vector<float>& dy, const std::vector<float>& w,
                        const kernels::Conv2dShape& s) {
  const int64_t ipg = s.in_channels / s.groups, opg = s.out_channels / s.groups;
  const int64_t oh_count = s.out_height(), ow_count = s.out_width();
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t c = 0; c < s.in_channels; ++c)
      for (int64_t h = 0; h < s.in_height; ++h)
        for (int64_t v = 0; v < s.in_width; ++v) {
          float sum = 0.0f;
          for (int64_t oi = 0; oi < opg; ++oi)
            for (int64_t kh = 0; kh < s.kernel_height; ++kh)
              for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
                const int64_t o = c / ipg * opg + oi;
                const int64_t oh = h + s.padding_height - kh, ow = v + s.padding_width - kw;
                const float g = oh >= 0 && oh < oh_count && ow >= 0 && ow < ow_count
                                    ? dy[((n * s.out_channels + o) * oh_count + oh) * ow_count + ow]
                                    : 0.0f;
                sum += w[((o * ipg + c % ipg) * s.kernel_height + kh) * s.kernel_width + kw] * g;
              }
          dx[((n * s.in_channels + c) * s.in_height + h) * s.in_width + v] = sum;
        }
}

// Backward-weights: over the padded plane's flat positions j = oh·Wp + column (columns past
// the output's width carry a zero gradient and read the next row's input, as the kernel does),
// element j adds to float lane j mod 16 per image; each image's lanes add into double lanes,
// and the lanes into the weight.
void backward_weights_twin(std::vector<float>& dw, const std::vector<float>& dy, const std::vector<float>& x,
                           const kernels::Conv2dShape& s) {
  const int64_t ipg = s.in_channels / s.groups, opg = s.out_channels / s.groups;
  const int64_t oh_count = s.out_height(), ow_count = s.out_width();
  const int64_t height = s.in_height + 2 * s.padding_height, width = s.in_width + 2 * s.padding_width;
  auto padded = [&](int64_t n, int64_t c, int64_t at) {  // flat position in the padded plane
    const int64_t h = at / width - s.padding_height, v = at % width - s.padding_width;
    if (at >= height * width || h < 0 || h >= s.in_height || v < 0 || v >= s.in_width) return 0.0f;
    return x[((n * s.in_channels + c) * s.in_height + h) * s.in_width + v];
  };
  for (int64_t o = 0; o < s.out_channels; ++o)
    for (int64_t ci = 0; ci < ipg; ++ci)
      for (int64_t kh = 0; kh < s.kernel_height; ++kh)
        for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
          double lanes[16] = {};
          for (int64_t n = 0; n < s.batch; ++n) {
            float image[16] = {};
            for (int64_t j = 0; j < oh_count * width; ++j) {
              const int64_t oh = j / width, column = j % width;
              const float g = column < ow_count
                                  ? dy[((n * s.out_channels + o) * oh_count + oh) * ow_count + column]
                                  : 0.0f;
              image[j % 16] += g * padded(n, o / opg * ipg + ci, j + kh * width + kw);
            }
            for (int l = 0; l < 16; ++l) lanes[l] += image[l];
          }
          double total = 0;
          for (const double lane : lanes) total += lane;
          dw[((o * ipg + ci) * s.kernel_height + kh) * s.kernel_width + kw] = static_cast<float>(total);
        }
}
}  // namespace

TEST_CASE("grouped conv kernels equal their plain-loop twins bit for bit") {
  using S = kernels::Conv2dShape;
  // Planes of 9 to 32 columns (flat lengths below, at and past 16, with tails), 4 to 25 taps
  // (passes of 9 and a remainder), 1 to 4 channels per group, padding, the first-layer shape.
  const S shapes[] = {
      S{3, 40, 13, 13, 40, 3, 3, 1, 1, 0, 0, 1, 1, 20},  // jermmy conv2
      S{2, 1, 28, 28, 8, 3, 3},                          // jermmy conv1's shape (weights only)
      S{2, 8, 28, 28, 16, 5, 5, 1, 1, 2, 2, 1, 1, 4},    // 25 taps, padding 2
      S{2, 12, 9, 7, 8, 3, 2, 1, 1, 1, 1, 1, 1, 4},      // uneven kernel, 3 in / 2 out per group
      S{1, 6, 3, 4, 9, 2, 2, 1, 1, 0, 0, 1, 1, 3},       // planes shorter than a vector
      S{2, 1, 28, 28, 4, 5, 5, 1, 1, 2, 2},              // lenet conv1's shape (weights only)
  };
  for (const S& s : shapes) {
    CAPTURE(s.in_channels);
    CAPTURE(s.kernel_height);
    const int64_t ipg = s.in_channels / s.groups;
    const int64_t x_size = s.batch * s.in_channels * s.in_height * s.in_width;
    const int64_t y_size = s.batch * s.out_channels * s.out_height() * s.out_width();
    const int64_t w_size = s.out_channels * ipg * s.kernel_height * s.kernel_width;
    Generator generator(21);
    auto values = [&](int64_t n, float range) {  // full range of the sign, magnitudes over 2^±8
      std::vector<float> v(static_cast<std::size_t>(n));
      for (float& e : v)
        e = (generator.uniform() < 0.5 ? -range : range) *
            std::ldexp(generator.uniform(), -8 + static_cast<int>(16 * generator.uniform()));
      return v;
    };
    const std::vector<float> x = values(x_size, 1), w = values(w_size, 1), b = values(s.out_channels, 1),
                             dy = values(y_size, 1);
    std::vector<float> dw(w_size), db(s.out_channels), dw_twin(w_size);
    REQUIRE(kernels::conv2d_grouped_weights_applies(s));
    kernels::conv2d_backward_weights_grouped(dw.data(), db.data(), dy.data(), x.data(), s);
    backward_weights_twin(dw_twin, dy, x, s);
    CHECK(dw == dw_twin);
    if (!kernels::conv2d_grouped_applies(s)) continue;  // first layers: only the weight gradient
    std::vector<float> y(y_size), y_twin(y_size), dx(x_size), dx_twin(x_size);
    kernels::conv2d_forward_grouped(y.data(), x.data(), w.data(), b.data(), s);
    forward_twin(y_twin, x, w, b, s);
    CHECK(y == y_twin);
    kernels::conv2d_backward_data_grouped(dx.data(), dy.data(), w.data(), s);
    backward_data_twin(dx_twin, dy, w, s);
    CHECK(dx == dx_twin);
  }
}

TEST_CASE("conv2d_relu: the ReLU post-op gives relu(conv2d(...)); with gradients, the two ops") {
  struct Case {
    Shape input, weight;
    Conv2dOptions options;
    bool has_bias;
  };
  const Case cases[] = {
      {{8, 16, 16, 16}, {16, 16, 3, 3}, Conv2dOptions::square(1, 1), false},  // resnet's 16-channel stage
      {{4, 16, 16, 16}, {32, 16, 3, 3}, Conv2dOptions::square(2, 1), true},   // downsample, with bias
      {{4, 16, 16, 16}, {32, 16, 1, 1}, Conv2dOptions::square(2, 0), false},  // projection shortcut
      {{3, 1, 28, 28}, {6, 1, 5, 5}, Conv2dOptions::square(1, 2), true},      // a first layer
      {{2, 12, 9, 7}, {8, 3, 3, 2}, {1, 1, 1, 1, 1, 1, 4}, true},             // grouped kernels: two ops
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    CAPTURE(c.weight);
    Tensor x = random_leaf(c.input, 21), w = random_leaf(c.weight, 22);
    Tensor b = c.has_bias ? random_leaf({c.weight[0]}, 23) : Tensor();
    Tensor expected = relu(conv2d(x, w, b, c.options)).detach();
    Tensor fused;
    {
      NoGradGuard no_grad;
      fused = conv2d_relu(x, w, b, c.options);
    }
    REQUIRE(fused.shape() == expected.shape());
    int64_t different = 0, zeros = 0;  // as values: the post-op may leave -0 where relu gives +0
    for (int64_t i = 0; i < fused.numel(); ++i) {
      different += fused.data()[i] != expected.data()[i];
      zeros += expected.data()[i] == 0.0f;
    }
    CHECK(different == 0);
    CHECK(zeros > fused.numel() / 4);  // the ReLU did cut: about half the outputs
    // With gradients wanted: relu(conv2d), gradient included.
    Tensor y = conv2d_relu(x, w, b, c.options);
    CHECK(all_close(y, expected, 0, 0));
    y.backward(Tensor::ones(y.shape()));
    Tensor x2 = x.detach().clone().set_requires_grad(true);
    relu(conv2d(x2, w.detach(), c.has_bias ? b.detach() : Tensor(), c.options))
        .backward(Tensor::ones(y.shape()));
    CHECK(all_close(x.grad(), x2.grad(), 0, 0));
  }
}

TEST_CASE("conv2d_blocked: the blocked layout, and conv [+ residual] [relu] equal to the NCHW ops") {
  const int64_t block = qforge::testing::channel_block_or_note();
  if (block == 0) return;
  Generator generator(41);
  // The layout: channel c of pixel (h, w) at [n, c/B, h, w, c%B]; and back, the same floats.
  const Tensor image = Tensor::randn({2, 2 * block, 3, 5}, generator);
  const Tensor blocked = to_channel_blocked(image);
  REQUIRE(blocked.shape() == Shape{2, 2, 3, 5, block});
  int64_t misplaced = 0;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 2 * block; ++c)
      for (int64_t p = 0; p < 15; ++p)
        misplaced += blocked.data()[(((n * 2 + c / block) * 15) + p) * block + c % block] !=
                     image.data()[(n * 2 * block + c) * 15 + p];
  CHECK(misplaced == 0);
  CHECK(all_close(from_channel_blocked(blocked), image, 0, 0));

  struct Case {
    Shape input, weight;
    Conv2dOptions options;
    bool has_bias, blocked_input, residual, relu;
  };
  const int64_t b = block, b2 = 2 * block;
  const Case cases[] = {
      {{4, b, 14, 14}, {b, b, 3, 3}, Conv2dOptions::square(1, 1), false, true, false, true},  // a stage's
                                                                                              // conv
      {{4, b, 14, 14}, {b, b, 3, 3}, Conv2dOptions::square(1, 1), false, true, true, true},   // + add + relu
      {{4, b, 14, 14}, {b2, b, 3, 3}, Conv2dOptions::square(2, 1), true, true, false, true},  // downsample
      {{4, b, 14, 14}, {b2, b, 1, 1}, Conv2dOptions::square(2, 0), false, true, false, false},  // shortcut
      {{3, b2, 7, 9}, {b, b2, 3, 3}, Conv2dOptions::square(1, 1), true, true, true, false},  // + add, no relu
      {{3, 1, 28, 28}, {b, 1, 5, 5}, Conv2dOptions::square(1, 2), true, false, false, true},  // a first layer
      {{2, b, 9, 7}, {b, b, 3, 3}, Conv2dOptions::square(1, 1), true, false, false, false},   // NCHW in
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    CAPTURE(c.weight);
    CAPTURE(c.residual);
    NoGradGuard no_grad;
    const Tensor x = Tensor::randn(c.input, generator), w = Tensor::randn(c.weight, generator);
    const Tensor bias = c.has_bias ? Tensor::randn({c.weight[0]}, generator) : Tensor();
    Tensor expected = conv2d(x, w, bias, c.options, Backend::reference);  // the plain loops
    const Tensor residual = c.residual ? Tensor::randn(expected.shape(), generator) : Tensor();
    if (c.residual) expected = add(expected, residual);
    if (c.relu) expected = relu(expected);
    const Tensor input = c.blocked_input ? to_channel_blocked(x) : x;
    REQUIRE(conv2d_blocked_applies(input, w, c.options));
    const Tensor got = conv2d_blocked(input, w, bias, c.options, c.relu,
                                      c.residual ? to_channel_blocked(residual) : Tensor());
    REQUIRE(got.dim() == 5);
    CHECK(all_close(from_channel_blocked(got), expected, 1e-4, 1e-4));
    // The fast NCHW path, as inference ran it before: the same kernel, to rounding.
    Tensor nchw = c.relu ? conv2d_relu(x, w, bias, c.options) : conv2d(x, w, bias, c.options);
    if (c.residual) nchw = c.relu ? relu(add(conv2d(x, w, bias, c.options), residual)) : add(nchw, residual);
    CHECK(all_close(from_channel_blocked(got), nchw, 1e-5, 1e-5));
    if (c.residual) {  // in place onto the residual: the same floats, and no copy
      Tensor onto = to_channel_blocked(residual);
      const float* storage = onto.data();
      conv2d_blocked_onto(onto, input, w, bias, c.options, c.relu);
      CHECK(onto.data() == storage);
      CHECK(all_close(onto, got, 0, 0));
    }
  }

  NoGradGuard no_grad;
  const Tensor x = to_channel_blocked(Tensor::randn({2, b, 6, 6}, generator)),
               w = Tensor::randn({b, b, 3, 3}, generator);
  CHECK_FALSE(
      conv2d_blocked_applies(x, Tensor::randn({b, 1, 3, 3}, generator), Conv2dOptions::square(1, 1, 1, b)));
  CHECK_FALSE(conv2d_blocked_applies(x, Tensor::randn({b + 1, b, 3, 3}, generator), {}));
  CHECK_THROWS_WITH(
      conv2d_blocked(x, w, Tensor(), Conv2dOptions::square(1, 1), false, Tensor::zeros({2, 1, 5, 5, b})),
      doctest::Contains("residual"));
  Tensor same = x;  // adding onto its own input would overwrite what the conv reads
  CHECK_THROWS_WITH(conv2d_blocked_onto(same, x, w, Tensor(), Conv2dOptions::square(1, 1), false),
                    doctest::Contains("the conv's own input"));
  CHECK_THROWS_WITH(from_channel_blocked(Tensor::zeros({2, b, 6, 6})),
                    doctest::Contains("expected (N,C/B,H,W,B)"));
  CHECK_THROWS_WITH(to_channel_blocked(Tensor::zeros({2, b + 1, 6, 6})), doctest::Contains("multiple of"));
}
