// Derivative table (g = dL/dy, broadcast back over the reduced axis):
//   sum    dx = g
//   mean   dx = g / n
//   max    dx = g at the (first) argmax, 0 elsewhere
#include "core/ops/reduce.h"

#include <limits>

#include "core/autograd.h"
#include "core/ops/elementwise.h"

namespace qforge {

int64_t normalize_axis(int64_t axis, int64_t rank, const char* op) {
  QF_CHECK(axis >= -rank && axis < rank, op, ": axis ", axis, " out of range for a ", rank, "-D tensor");
  return axis < 0 ? axis + rank : axis;
}

AxisSplit split_at_axis(const Shape& shape, int64_t axis) {
  AxisSplit split{1, shape[axis], 1};
  for (int64_t i = 0; i < axis; ++i) split.outer *= shape[i];
  for (std::size_t i = axis + 1; i < shape.size(); ++i) split.inner *= shape[i];
  return split;
}

namespace {

Shape reduced_shape(const Shape& shape, int64_t axis, bool keepdim) {
  Shape out = shape;
  if (keepdim)
    out[axis] = 1;
  else
    out.erase(out.begin() + axis);
  return out;
}

// grad (reduced shape) -> (input shape), each element scaled by `factor`.
Tensor expand_over_axis(const Tensor& grad, const Shape& input_shape, int64_t axis, float factor) {
  AxisSplit s = split_at_axis(input_shape, axis);
  Tensor dx = Tensor::empty(input_shape);
  const float* g = grad.data();
  float* out = dx.data();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t k = 0; k < s.extent; ++k)
      for (int64_t i = 0; i < s.inner; ++i)
        out[(o * s.extent + k) * s.inner + i] = g[o * s.inner + i] * factor;
  return dx;
}

Tensor sum_axis_scaled(const Tensor& x, int64_t axis, bool keepdim, float factor, const char* name) {
  axis = normalize_axis(axis, x.dim(), name);
  AxisSplit s = split_at_axis(x.shape(), axis);
  Tensor y = Tensor::zeros(reduced_shape(x.shape(), axis, keepdim));
  const float* in = x.data();
  float* out = y.data();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t k = 0; k < s.extent; ++k)
      for (int64_t i = 0; i < s.inner; ++i) out[o * s.inner + i] += in[(o * s.extent + k) * s.inner + i];
  if (factor != 1.0f) mul_(y, factor);
  const Shape& input_shape = x.shape();
  return record(y, name, {x}, [input_shape, axis, factor](const Tensor& g, const Node&) {
    return std::vector<Tensor>{expand_over_axis(g, input_shape, axis, factor)};
  });
}

Tensor sum_all_scaled(const Tensor& x, float factor, const char* name) {
  const float* in = x.data();
  double total = 0;  // double: sums of 1e6 floats stay exact to float precision
  for (int64_t i = 0; i < x.numel(); ++i) total += in[i];
  Tensor y = Tensor::scalar(static_cast<float>(total * factor));
  const Shape& input_shape = x.shape();
  return record(y, name, {x}, [input_shape, factor](const Tensor& g, const Node&) {
    return std::vector<Tensor>{Tensor::full(input_shape, g.item() * factor)};
  });
}

// Reduces with max; `indices` receives the flat input index of each winner.
Tensor max_with_backward(const Tensor& x, Tensor y, std::vector<int64_t> indices, const char* name) {
  const Shape& input_shape = x.shape();
  return record(std::move(y), name, {x},
                [input_shape, indices = std::move(indices)](const Tensor& g, const Node&) {
                  Tensor dx = Tensor::zeros(input_shape);
                  const float* pg = g.data();
                  float* out = dx.data();
                  for (std::size_t i = 0; i < indices.size(); ++i) out[indices[i]] += pg[i];
                  return std::vector<Tensor>{dx};
                });
}

}  // namespace

Tensor sum(const Tensor& x) { return sum_all_scaled(x, 1.0f, "sum"); }
Tensor sum(const Tensor& x, int64_t axis, bool keepdim) {
  return sum_axis_scaled(x, axis, keepdim, 1.0f, "sum");
}

Tensor mean(const Tensor& x) {
  QF_CHECK(x.numel() > 0, "mean: empty tensor");
  return sum_all_scaled(x, 1.0f / static_cast<float>(x.numel()), "mean");
}

Tensor mean(const Tensor& x, int64_t axis, bool keepdim) {
  int64_t n = x.size(axis);
  QF_CHECK(n > 0, "mean: empty axis ", axis);
  return sum_axis_scaled(x, axis, keepdim, 1.0f / static_cast<float>(n), "mean");
}

Tensor max(const Tensor& x) {
  QF_CHECK(x.numel() > 0, "max: empty tensor");
  const float* in = x.data();
  int64_t best = 0;
  for (int64_t i = 1; i < x.numel(); ++i)
    if (in[i] > in[best]) best = i;
  return max_with_backward(x, Tensor::scalar(in[best]), {best}, "max");
}

Tensor max(const Tensor& x, int64_t axis, bool keepdim) {
  axis = normalize_axis(axis, x.dim(), "max");
  AxisSplit s = split_at_axis(x.shape(), axis);
  QF_CHECK(s.extent > 0, "max: empty axis ", axis);
  Tensor y = Tensor::empty(reduced_shape(x.shape(), axis, keepdim));
  std::vector<int64_t> indices(y.numel());
  const float* in = x.data();
  float* out = y.data();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      int64_t best = o * s.extent * s.inner + i;
      for (int64_t k = 1; k < s.extent; ++k) {
        int64_t at = (o * s.extent + k) * s.inner + i;
        if (in[at] > in[best]) best = at;
      }
      out[o * s.inner + i] = in[best];
      indices[o * s.inner + i] = best;
    }
  return max_with_backward(x, std::move(y), std::move(indices), "max");
}

Tensor argmax(const Tensor& x, int64_t axis) {
  axis = normalize_axis(axis, x.dim(), "argmax");
  AxisSplit s = split_at_axis(x.shape(), axis);
  QF_CHECK(s.extent > 0, "argmax: empty axis ", axis);
  Tensor y = Tensor::empty(reduced_shape(x.shape(), axis, false), DType::s32);
  const float* in = x.data();
  int32_t* out = y.data_as<int32_t>();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      int64_t best = 0;
      for (int64_t k = 1; k < s.extent; ++k)
        if (in[(o * s.extent + k) * s.inner + i] > in[(o * s.extent + best) * s.inner + i]) best = k;
      out[o * s.inner + i] = static_cast<int32_t>(best);
    }
  return y;
}

}  // namespace qforge
