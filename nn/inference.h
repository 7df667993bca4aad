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
// - A conv's folded weights and their reordered floats are kept on the conv between calls,
//   checked against its parameters at every call (Note [Inference weights], inference.cpp).
// Anything else runs its own forward on NCHW; the result is always NCHW. A 5-D input (the
// shape of a blocked activation, whose shortcuts this walk writes in place) is refused: the
// modules run their layers one by one for it.
#pragma once

#include <mutex>
#include <vector>

#include "core/kernels/conv2d.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace qforge::nn {

class BatchNorm2d;
class Conv2d;

// One conv's weights as inference runs them (Note [Inference weights]): folded with the
// BatchNorm after it, if any, and reordered into the kernel's layout, with a copy of the
// parameters they were built from.
struct InferenceWeights {
  std::mutex mutex;            // held from the check to the end of the conv that reads them
  std::vector<int64_t> sizes;  // of each parameter in `source`; -1: undefined
  std::vector<float> source;   // the parameters, one after another
  Tensor weight, bias;
  kernels::ReorderedWeights reordered;
  // Rebuilt unless every parameter equals its copy, byte for byte.
  void update(const Conv2d& conv, const BatchNorm2d* bn);
};

Tensor inference_forward(Module& module, const Tensor& input);

}  // namespace qforge::nn
