// Inference through a module tree with no gradient (under a NoGradGuard): the layers' values,
// to rounding, in fewer passes over the activations. Sequential, BasicBlock and ResNet forward
// through here when grad mode is off.
//
// - Conv2d → BatchNorm2d in evaluation runs as one conv with the BN folded in
//   (fold_batch_norm), a ReLU after it as the conv's post-op.
// - Between convolutions the activations stay in oneDNN's channel-blocked layout (Note
//   [Blocked inference] in core/kernels/conv2d.h): no reorder per conv. A residual block's add
//   and ReLU are its last conv's post-ops: that conv writes onto the shortcut's output.
// - A MaxPool2d of a blocked activation pools it blocked (max_pool2d_blocked); on NCHW, a
//   ReLU before a MaxPool2d runs as relu_max_pool2d (one pass). An AdaptiveAvgPool2d reads
//   the blocked activation and writes NCHW (adaptive_avg_pool2d_blocked).
// Anything else runs its own forward on NCHW; the result is always NCHW. A 5-D input (the
// shape of a blocked activation, whose shortcuts this walk writes in place) is refused: the
// modules run their layers one by one for it.
#pragma once

#include "core/tensor.h"
#include "nn/module.h"

namespace qforge::nn {

Tensor inference_forward(Module& module, const Tensor& input);

}  // namespace qforge::nn
