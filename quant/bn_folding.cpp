#include "quant/bn_folding.h"

#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"

namespace qforge::quant {

Tensor bn_folding_factor(const nn::BatchNorm2d& bn) { return nn::folding_factor(bn); }

Tensor fold_weight(const nn::Conv2d& conv, const Tensor& factor) {
  return mul(conv.weight, reshape(factor, {conv.out_channels, 1, 1, 1}));
}

Tensor conv_bn_folded_forward(const Tensor& x, const Tensor& folded_weight, const Tensor& factor,
                              nn::Conv2d& conv, nn::BatchNorm2d& bn, bool use_batch_statistics) {
  // conv output / f (+ conv bias), a per-channel affine, then BN. A channel with
  // f = 0 (γ = 0: a pruned channel) has zero folded weights and a zero conv output; BN's
  // output there is β whatever it normalizes, so that channel divides by 1 instead of 0
  // (0/0 would poison BN's running statistics with NaN). The gradient still flows through f.
  Tensor zero_channels = Tensor::zeros(factor.shape());
  for (int64_t c = 0; c < factor.numel(); ++c)
    zero_channels.data()[c] = factor.data()[c] == 0.0f ? 1.0f : 0.0f;
  const Tensor divisor = add(factor, zero_channels);
  // The affine and BN are one op (affine_batch_norm): the rescaled output is never stored.
  return affine_batch_norm(conv2d(x, folded_weight, Tensor(), conv.options), pow(divisor, -1.0f), conv.bias,
                           bn.running_mean, bn.running_var, bn.weight, bn.bias, use_batch_statistics,
                           bn.momentum, bn.eps, bn.sync);
}

std::pair<Tensor, Tensor> folded_weight_and_bias(const nn::Conv2d& conv, const nn::BatchNorm2d* bn) {
  NoGradGuard no_grad;
  if (!bn)
    return {conv.weight.detach(),
            conv.bias.defined() ? conv.bias.detach() : Tensor::zeros({conv.out_channels})};
  // The same float operations as the training-time forward (fold_weight), so the weights
  // convert quantizes are bit for bit the ones the weight quantizer last saw.
  return nn::fold_batch_norm(conv, *bn);
}

}  // namespace qforge::quant
