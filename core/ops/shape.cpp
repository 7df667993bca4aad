// Derivative table (g = dL/dy):
//   reshape/flatten   dx = reshape(g, shape of x)
//   permute(p)        dx = permute(g, inverse of p)
//   cat               dx_i = the slice of g that x_i filled
//   slice             dx = zeros with g written at the slice
//   index_select      dx = zeros with g added at the indices (index_add)
#include "core/ops/shape.h"

#include <algorithm>
#include <cstring>

#include "core/autograd.h"
#include "core/ops/reduce.h"

namespace qforge {

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor y = x.view(shape);
  const Shape& input_shape = x.shape();
  return record(y, "reshape", {x}, [input_shape](const Tensor& g, const Node&) {
    return std::vector<Tensor>{g.view(input_shape)};
  });
}

Tensor flatten(const Tensor& x, int64_t start_axis, int64_t end_axis) {
  int64_t rank = x.dim();
  if (rank == 0) return reshape(x, {1});
  start_axis = normalize_axis(start_axis, rank, "flatten");
  end_axis = normalize_axis(end_axis, rank, "flatten");
  QF_CHECK(start_axis <= end_axis, "flatten: start axis ", start_axis, " after end axis ", end_axis);
  Shape shape;
  for (int64_t i = 0; i < rank; ++i) {
    if (i <= start_axis || i > end_axis) shape.push_back(x.size(i));
    if (i > start_axis && i <= end_axis) shape.back() *= x.size(i);
  }
  return reshape(x, shape);
}

namespace {

// y[i_0..i_n] = x[i_axes[0], ...]: a strided gather, row by row over the output.
void permute_copy(float* out, const float* in, const Shape& in_shape, const std::vector<int64_t>& axes) {
  const int64_t rank = static_cast<int64_t>(axes.size());
  std::vector<int64_t> in_strides(rank, 1);
  for (int64_t i = rank - 2; i >= 0; --i) in_strides[i] = in_strides[i + 1] * in_shape[i + 1];
  Shape out_shape(rank);
  std::vector<int64_t> strides(rank);  // input stride of each output axis
  for (int64_t i = 0; i < rank; ++i) {
    out_shape[i] = in_shape[axes[i]];
    strides[i] = in_strides[axes[i]];
  }
  int64_t total = shape_numel(out_shape);
  if (total == 0) return;
  std::vector<int64_t> index(rank, 0);
  int64_t offset = 0;
  const int64_t inner = out_shape.back(), inner_stride = strides.back();
  for (int64_t o = 0; o < total; o += inner) {
    for (int64_t i = 0; i < inner; ++i) out[o + i] = in[offset + i * inner_stride];
    for (int64_t axis = rank - 2; axis >= 0; --axis) {
      offset += strides[axis];
      if (++index[axis] < out_shape[axis]) break;
      offset -= strides[axis] * index[axis];
      index[axis] = 0;
    }
  }
}

}  // namespace

Tensor permute(const Tensor& x, const std::vector<int64_t>& axes) {
  const int64_t rank = x.dim();
  QF_CHECK(static_cast<int64_t>(axes.size()) == rank, "permute: ", axes.size(), " axes for a ", rank,
           "-D tensor");
  std::vector<int64_t> normalized(rank), inverse(rank, -1);
  for (int64_t i = 0; i < rank; ++i) {
    normalized[i] = normalize_axis(axes[i], rank, "permute");
    QF_CHECK(inverse[normalized[i]] < 0, "permute: axis ", axes[i], " repeated");
    inverse[normalized[i]] = i;
  }
  Shape out_shape(rank);
  for (int64_t i = 0; i < rank; ++i) out_shape[i] = x.size(normalized[i]);
  Tensor y = Tensor::empty(out_shape);
  if (rank > 0)
    permute_copy(y.data(), x.data(), x.shape(), normalized);
  else
    y.copy_from(x);
  return record(y, "permute", {x},
                [inverse](const Tensor& g, const Node&) { return std::vector<Tensor>{permute(g, inverse)}; });
}

Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1) {
  std::vector<int64_t> axes(x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) axes[i] = i;
  std::swap(axes[normalize_axis(axis0, x.dim(), "transpose")],
            axes[normalize_axis(axis1, x.dim(), "transpose")]);
  return permute(x, axes);
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t axis) {
  QF_CHECK(!tensors.empty(), "cat: no tensors");
  const Shape& first = tensors[0].shape();
  axis = normalize_axis(axis, static_cast<int64_t>(first.size()), "cat");
  Shape out_shape = first;
  out_shape[axis] = 0;
  std::vector<int64_t> extents;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const Shape& shape = tensors[t].shape();
    bool compatible = shape.size() == first.size();
    for (std::size_t i = 0; compatible && i < shape.size(); ++i)
      compatible = static_cast<int64_t>(i) == axis || shape[i] == first[i];
    QF_CHECK(compatible, "cat: tensor ", t, " has shape ", shape, ", expected ", first, " except along axis ",
             axis);
    extents.push_back(shape[axis]);
    out_shape[axis] += shape[axis];
  }
  Tensor y = Tensor::empty(out_shape);
  AxisSplit s = split_at_axis(out_shape, axis);
  int64_t at = 0;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const float* in = tensors[t].data();
    int64_t row = extents[t] * s.inner;
    for (int64_t o = 0; o < s.outer; ++o)
      std::memcpy(y.data() + (o * s.extent + at) * s.inner, in + o * row, row * sizeof(float));
    at += extents[t];
  }
  return record(y, "cat", tensors, [axis, extents](const Tensor& g, const Node& node) {
    std::vector<Tensor> grads(extents.size());
    int64_t start = 0;
    for (std::size_t t = 0; t < extents.size(); ++t) {
      if (node.needs_grad(t)) grads[t] = slice(g, axis, start, start + extents[t]);
      start += extents[t];
    }
    return grads;
  });
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end) {
  axis = normalize_axis(axis, x.dim(), "slice");
  const int64_t extent = x.size(axis);
  if (start < 0) start += extent;
  if (end < 0) end += extent;
  start = std::clamp<int64_t>(start, 0, extent);
  end = std::clamp<int64_t>(end, start, extent);
  Shape out_shape = x.shape();
  out_shape[axis] = end - start;
  AxisSplit s = split_at_axis(x.shape(), axis);
  Tensor y = Tensor::empty(out_shape);
  const int64_t row = (end - start) * s.inner;
  for (int64_t o = 0; o < s.outer; ++o)
    std::memcpy(y.data() + o * row, x.data() + (o * extent + start) * s.inner, row * sizeof(float));
  const Shape& input_shape = x.shape();
  // Its gradient is g in the sliced rows and zero elsewhere: added in place into the input's
  // gradient so far (Node::add_into), only the sliced rows are touched.
  auto add_into = [start, row, s](const Tensor& g, Tensor& dx) {
    float* out = dx.data();
    const float* in = g.data();
    for (int64_t o = 0; o < s.outer; ++o) {
      float* target = out + (o * s.extent + start) * s.inner;
      const float* source = in + o * row;
      for (int64_t i = 0; i < row; ++i) target[i] += source[i];
    }
  };
  return record(
      y, "slice", x,
      [input_shape, add_into](const Tensor& g, const Node&) {
        Tensor dx = Tensor::zeros(input_shape);
        add_into(g, dx);
        return std::vector<Tensor>{dx};
      },
      add_into);
}

Tensor index_select(const Tensor& x, int64_t axis, const Tensor& indices) {
  axis = normalize_axis(axis, x.dim(), "index_select");
  QF_CHECK(indices.dtype() == DType::s32 && indices.dim() == 1,
           "index_select: expected 1-D s32 indices, got ", dtype_name(indices.dtype()), " ", indices.shape());
  const int64_t extent = x.size(axis), count = indices.numel();
  std::vector<int32_t> picked(indices.data_as<int32_t>(), indices.data_as<int32_t>() + count);
  for (int32_t index : picked)
    QF_CHECK(index >= 0 && index < extent, "index_select: index ", index, " out of range for axis ", axis,
             " of extent ", extent);
  AxisSplit s = split_at_axis(x.shape(), axis);
  Shape out_shape = x.shape();
  out_shape[axis] = count;
  Tensor y = Tensor::empty(out_shape);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t k = 0; k < count; ++k)
      std::memcpy(y.data() + (o * count + k) * s.inner, x.data() + (o * extent + picked[k]) * s.inner,
                  s.inner * sizeof(float));
  const Shape& input_shape = x.shape();
  return record(y, "index_select", {x}, [input_shape, picked, s, count](const Tensor& g, const Node&) {
    Tensor dx = Tensor::zeros(input_shape);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t k = 0; k < count; ++k) {
        float* target = dx.data() + (o * s.extent + picked[k]) * s.inner;
        const float* source = g.data() + (o * count + k) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) target[i] += source[i];
      }
    return std::vector<Tensor>{dx};
  });
}

}  // namespace qforge
