// Reductions over all elements or one axis: sum, mean, max (and argmax, which has no
// gradient). Without an axis the result has shape []; with keepdim the reduced axis
// stays with extent 1.
#pragma once

#include "core/tensor.h"

namespace qforge {

Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int64_t axis, bool keepdim = false);
// Gradient goes to the first maximal element (as PyTorch's max(dim) indices).
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t axis);  // s32, no gradient

// Normalizes a possibly negative axis against rank, naming the op on error.
int64_t normalize_axis(int64_t axis, int64_t rank, const char* op);

// (outer, extent, inner) of `shape` around `axis`: the view every axis op uses.
struct AxisSplit {
  int64_t outer, extent, inner;
};
AxisSplit split_at_axis(const Shape& shape, int64_t axis);

}  // namespace qforge
