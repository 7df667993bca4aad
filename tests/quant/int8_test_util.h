// Layout helpers for the integer tests: the reference vectors are NCHW, the runtime NHWC.
#pragma once

#include <cstdint>
#include <vector>

namespace qforge::testing {

template <typename T>
std::vector<T> nchw_to_nhwc(const std::vector<T>& x, const std::vector<int64_t>& shape) {
  const int64_t n = shape[0], c = shape[1], h = shape.size() > 2 ? shape[2] : 1,
                w = shape.size() > 3 ? shape[3] : 1;
  std::vector<T> y(x.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t p = 0; p < h * w; ++p) y[(i * h * w + p) * c + k] = x[(i * c + k) * h * w + p];
  return y;
}

template <typename T>
std::vector<T> nhwc_to_nchw(const std::vector<T>& x, const std::vector<int64_t>& shape) {
  const int64_t n = shape[0], c = shape[1], h = shape.size() > 2 ? shape[2] : 1,
                w = shape.size() > 3 ? shape[3] : 1;
  std::vector<T> y(x.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t p = 0; p < h * w; ++p) y[(i * c + k) * h * w + p] = x[(i * h * w + p) * c + k];
  return y;
}

}  // namespace qforge::testing
