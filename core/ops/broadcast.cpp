#include "core/ops/broadcast.h"

#include <algorithm>

namespace qforge {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  std::size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    QF_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b, " cannot be broadcast (axis ", i,
             ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::size_t rank = out.size(), lead = rank - in.size();
  std::vector<int64_t> strides(rank, 0);
  int64_t stride = 1;
  for (std::size_t i = rank; i-- > lead;) {
    int64_t extent = in[i - lead];
    strides[i] = extent == 1 ? 0 : stride;
    stride *= extent;
  }
  return strides;
}
}  // namespace

BroadcastPlan::BroadcastPlan(const Shape& a, const Shape& b, const char* op)
    : out_shape(broadcast_shapes(a, b, op)),
      a_strides(broadcast_strides(a, out_shape)),
      b_strides(broadcast_strides(b, out_shape)) {}

Tensor sum_to_shape(const Tensor& gradient, const Shape& shape) {
  if (gradient.shape() == shape) return gradient;
  Tensor result = Tensor::zeros(shape);
  // Reuse the plan with the target as "a": every output element adds into a[offset].
  BroadcastPlan plan(shape, gradient.shape(), "sum_to_shape");
  QF_CHECK(plan.out_shape == gradient.shape(), "sum_to_shape: ", gradient.shape(),
           " does not broadcast from ", shape);
  float* out = result.data();
  const float* in = gradient.data();
  plan.for_each_row([&](int64_t o, int64_t a, int64_t, int64_t count, int64_t a_step, int64_t) {
    if (a_step == 0) {
      float total = 0;
      for (int64_t i = 0; i < count; ++i) total += in[o + i];
      out[a] += total;
    } else {
      for (int64_t i = 0; i < count; ++i) out[a + i] += in[o + i];
    }
  });
  return result;
}

}  // namespace qforge
