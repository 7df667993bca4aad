// conv2d as PyTorch's F.conv2d: input (N,C,H,W), weight (O,C/groups,KH,KW),
// optional bias (O); stride, padding, dilation per axis; groups.
#pragma once

#include "core/backend.h"
#include "core/tensor.h"

namespace qforge {

namespace kernels {
class ReorderedWeights;  // core/kernels/conv2d.h
}

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

// Inference with activations in oneDNN's channel-blocked layout (Note [Blocked inference] in
// core/kernels/conv2d.h; nn/inference.h runs models so). A blocked activation is a
// 5-D tensor [N, C/B, H, W, B]: channel c of pixel (h, w) at [n, c/B, h, w, c%B]. No gradients.
//
// This machine's channel block B; 0 when its oneDNN has no blocked kernels.
int64_t channel_block();
// [N,C,H,W] -> [N,C/B,H,W,B] and back (C a multiple of B); the same floats, moved.
Tensor to_channel_blocked(const Tensor& nchw);
Tensor from_channel_blocked(const Tensor& blocked);
// True when conv2d_blocked takes this conv: a block exists, groups 1, output channels a
// multiple of B, and the input blocked with this B or NCHW.
bool conv2d_blocked_applies(const Tensor& input, const Tensor& weight, const Conv2dOptions& options);
// conv2d of a blocked or NCHW input (NCHW with C a multiple of B is blocked first; with other C
// the conv reads it as it is, as a first layer), written blocked: max(conv + bias + residual, 0)
// with `relu`, conv + bias + residual without; `residual` (blocked, the output's shape) may be
// undefined. Equal to the NCHW ops to rounding (the sum's order is oneDNN's).
// `kept` (optional): the weights in the kernel's layout, kept between calls by a caller whose
// weights do not change meanwhile (kernels::ReorderedWeights).
Tensor conv2d_blocked(const Tensor& input, const Tensor& weight, const Tensor& bias,
                      const Conv2dOptions& options, bool relu, const Tensor& residual = Tensor(),
                      kernels::ReorderedWeights* kept = nullptr);
// The same with the residual added in place: `residual` becomes the output (no copy of it);
// it must not be the input. For activations no one reads again (a block's shortcut).
void conv2d_blocked_onto(Tensor& residual, const Tensor& input, const Tensor& weight, const Tensor& bias,
                         const Conv2dOptions& options, bool relu, kernels::ReorderedWeights* kept = nullptr);

}  // namespace qforge
