// Pooling over NCHW: max_pool2d, avg_pool2d, adaptive_avg_pool2d with PyTorch's
// semantics (max pads with -inf; avg counts padding by default; adaptive windows
// span [floor(i·H/OH), ceil((i+1)·H/OH))). No ceil_mode, no dilation for avg.
#pragma once

#include "core/tensor.h"

namespace qforge {

struct Pool2dOptions {
  int64_t kernel_height, kernel_width;
  int64_t stride_height, stride_width;  // PyTorch's default stride is the kernel size
  int64_t padding_height = 0, padding_width = 0;
  int64_t dilation_height = 1, dilation_width = 1;  // max_pool2d only

  static Pool2dOptions square(int64_t kernel, int64_t stride = 0, int64_t padding = 0, int64_t dilation = 1) {
    if (stride == 0) stride = kernel;
    return {kernel, kernel, stride, stride, padding, padding, dilation, dilation};
  }
};

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options);
// max_pool2d(relu(x)), equal to the two ops bit for bit (NaN included: relu makes it 0 first).
// Without gradients and with 2×2 windows of stride 2 it is one pass, the ReLU applied as
// each value is loaded (inference: Conv → ReLU → MaxPool reads the activation once, not
// three times); otherwise it is the two ops.
Tensor relu_max_pool2d(const Tensor& x, const Pool2dOptions& options);
// max_pool2d of a channel-blocked activation [N, C/B, H, W, B] (Note [Blocked inference] in
// core/kernels/conv2d.h), written blocked: max_pool2d's values, NaN included. No gradient.
Tensor max_pool2d_blocked(const Tensor& x, const Pool2dOptions& options);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options, bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_height, int64_t out_width);
// adaptive_avg_pool2d of a channel-blocked activation, written NCHW (its output is small: the
// global pool before a classifier): adaptive_avg_pool2d's values bit for bit. No gradient.
Tensor adaptive_avg_pool2d_blocked(const Tensor& x, int64_t out_height, int64_t out_width);

}  // namespace qforge
