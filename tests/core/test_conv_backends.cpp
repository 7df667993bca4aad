// The fast conv paths (oneDNN; the direct grouped kernels) equal the im2col reference path,
// forward and every gradient, to 1e-4 relative (Note [Backends]).
#include <doctest/doctest.h>

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
