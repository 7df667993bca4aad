// Shape ops: reshape/flatten (views sharing storage), transpose/permute, cat, slice and
// index_select (copies). Their gradients only move numbers around.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace qforge {

Tensor reshape(const Tensor& x, const Shape& shape);  // -1 infers one axis
// Merges axes start_axis..end_axis into one (PyTorch's flatten; default keeps the batch).
Tensor flatten(const Tensor& x, int64_t start_axis = 1, int64_t end_axis = -1);
Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& axes);
Tensor cat(const std::vector<Tensor>& tensors, int64_t axis);
// Elements start..end-1 (clamped like Python slices; negatives count from the end).
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end);
// Picks entries of `axis` by index (s32 tensor, 1-D); repeated indices accumulate
// their gradients.
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& indices);

}  // namespace qforge
