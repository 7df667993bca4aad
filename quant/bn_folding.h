// BatchNorm folding (Note [BN folding]; PyTorch's ConvBn2d and fuse_conv_bn_eval,
// Krishnamoorthi 2018 §3.2, Jacob et al. 2018 §3.2).
//
// Note [BN folding]
// With σ = √(running_var + ε) and f = γ/σ (per output channel), a conv followed by BN in
// evaluation is one conv with weights W·f and bias β + (b − μ)·f: that is what convert
// deploys. During QAT the weights the integer runtime will use, fq(W·f), must be what
// training sees, so the conv runs with fq(W·f), its output is divided by f (and the conv
// bias added back), then BN runs — with batch statistics while they train, with the
// running statistics once frozen. Dividing by the same f keeps BN's normalization of the
// true conv output, so the statistics stay right at low bit widths. f uses the running
// variance (a buffer): no gradient flows through it.
#pragma once

#include <utility>

#include "core/tensor.h"

namespace qforge::nn {
class Conv2d;
class BatchNorm2d;
}  // namespace qforge::nn

namespace qforge::quant {

// f = γ/√(running_var + ε), (C).
Tensor bn_folding_factor(const nn::BatchNorm2d& bn);

// The conv's weights scaled by f, (O,C/g,KH,KW) — what the weight quantizer observes.
Tensor fold_weight(const nn::Conv2d& conv, const Tensor& factor);

// Training-time forward of Conv-BN given the (fake-quantized) folded weights:
//   y = BN(conv(x, folded_weight)/f + b), with batch or running statistics.
Tensor conv_bn_folded_forward(const Tensor& x, const Tensor& folded_weight, const Tensor& factor,
                              nn::Conv2d& conv, nn::BatchNorm2d& bn, bool use_batch_statistics);

// The plain conv equivalent in evaluation: (W·f, β + (b − μ)·f); without BN, (W, b or 0).
std::pair<Tensor, Tensor> folded_weight_and_bias(const nn::Conv2d& conv, const nn::BatchNorm2d* bn);

}  // namespace qforge::quant
