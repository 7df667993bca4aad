// conv2d as PyTorch's F.conv2d: input (N,C,H,W), weight (O,C/groups,KH,KW),
// optional bias (O); stride, padding, dilation per axis; groups.
#pragma once

#include "core/backend.h"
#include "core/tensor.h"

namespace qforge {

struct Conv2dOptions {
  int64_t stride_height = 1, stride_width = 1;
  int64_t padding_height = 0, padding_width = 0;
  int64_t dilation_height = 1, dilation_width = 1;
  int64_t groups = 1;

  // Square shorthand: Conv2dOptions::square(stride, padding, dilation, groups).
  static Conv2dOptions square(int64_t stride, int64_t padding = 0, int64_t dilation = 1, int64_t groups = 1) {
    return {stride, stride, padding, padding, dilation, dilation, groups};
  }
};

Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv2dOptions& options = {}, Backend backend = Backend::fast);

// relu(conv2d(...)) for inference. With no gradient wanted, on the oneDNN path, the ReLU is
// applied as the conv writes its output (a post-op: no pass of its own); the values are
// relu(conv2d(...))'s, except that a NaN stays NaN (PyTorch's relu) where the relu op gives 0.
// Otherwise (gradients, the grouped direct kernels, the reference backend) the two ops.
Tensor conv2d_relu(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(),
                   const Conv2dOptions& options = {}, Backend backend = Backend::fast);

}  // namespace qforge
