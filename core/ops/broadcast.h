// NumPy/PyTorch broadcasting for binary ops: shapes align from the right, an axis of
// extent 1 stretches. BroadcastPlan turns two input shapes into per-axis strides
// (0 on stretched axes) so a kernel walks the output row by row.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace qforge {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

struct BroadcastPlan {
  Shape out_shape;
  std::vector<int64_t> a_strides, b_strides;  // in elements, one per output axis

  BroadcastPlan(const Shape& a, const Shape& b, const char* op);

  // Calls row(out_offset, a_offset, b_offset, count, a_step, b_step) for each
  // innermost row of the output; a_step/b_step are 0 or 1.
  template <typename RowFn>
  void for_each_row(RowFn&& row) const {
    const int64_t rank = static_cast<int64_t>(out_shape.size());
    if (rank == 0) return row(0, 0, 0, 1, 0, 0);
    const int64_t inner = out_shape.back();
    const int64_t rows = inner == 0 ? 0 : shape_numel(out_shape) / inner;
    std::vector<int64_t> index(rank, 0);
    int64_t a_offset = 0, b_offset = 0;
    for (int64_t r = 0; r < rows; ++r) {
      row(r * inner, a_offset, b_offset, inner, a_strides.back(), b_strides.back());
      for (int64_t axis = rank - 2; axis >= 0; --axis) {  // odometer over outer axes
        a_offset += a_strides[axis];
        b_offset += b_strides[axis];
        if (++index[axis] < out_shape[axis]) break;
        a_offset -= a_strides[axis] * index[axis];
        b_offset -= b_strides[axis] * index[axis];
        index[axis] = 0;
      }
    }
  }
};

// Sums `gradient` (of a broadcast result) back down to `shape`: the backward of
// broadcasting. Returns `gradient` itself when no axis was stretched.
Tensor sum_to_shape(const Tensor& gradient, const Shape& shape);

}  // namespace qforge
