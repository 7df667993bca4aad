// The parameterized layers' constructors and forwards: thin calls into core ops; and
// Sequential's forward (nn/inference.h without gradients).
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/inference.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"

namespace qforge::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator& generator)
    : in_features(in_features), out_features(out_features) {
  QF_CHECK(in_features >= 1 && out_features >= 1, "Linear: features must be >= 1, got ", in_features, "->",
           out_features);
  weight = register_parameter("weight",
                              Tensor::kaiming_uniform({out_features, in_features}, in_features, generator));
  if (has_bias)
    bias = register_parameter("bias", Tensor::kaiming_uniform({out_features}, in_features, generator));
}

Tensor Linear::forward(const Tensor& input) { return linear(input, weight, bias); }

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, const Conv2dOptions& options,
               bool has_bias, Generator& generator)
    : in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size),
      options(options),
      inference_weights(std::make_shared<InferenceWeights>()) {
  QF_CHECK(options.groups >= 1 && in_channels % options.groups == 0 && out_channels % options.groups == 0,
           "Conv2d: groups ", options.groups, " must divide channels ", in_channels, " and ", out_channels);
  const int64_t fan_in = in_channels / options.groups * kernel_size * kernel_size;
  weight = register_parameter("weight", Tensor::kaiming_uniform({out_channels, in_channels / options.groups,
                                                                 kernel_size, kernel_size},
                                                                fan_in, generator));
  if (has_bias) bias = register_parameter("bias", Tensor::kaiming_uniform({out_channels}, fan_in, generator));
}

Tensor Conv2d::forward(const Tensor& input) { return conv2d(input, weight, bias, options); }

BatchNorm2d::BatchNorm2d(int64_t channels, float eps, float momentum)
    : channels(channels), eps(eps), momentum(momentum) {
  weight = register_parameter("weight", Tensor::ones({channels}));
  bias = register_parameter("bias", Tensor::zeros({channels}));
  running_mean = register_buffer("running_mean", Tensor::zeros({channels}));
  running_var = register_buffer("running_var", Tensor::ones({channels}));
}

Tensor BatchNorm2d::forward(const Tensor& input) {
  return batch_norm(input, running_mean, running_var, weight, bias, is_training(), momentum, eps, sync);
}

Tensor folding_factor(const BatchNorm2d& bn) {
  return div(bn.weight, sqrt(add(bn.running_var.detach(), bn.eps)));
}

// One loop, not the eight tensor ops of the formula: inference folds on every call, and at
// batch 1 the ops' fixed costs doubled resnet20's latency. Each value is the ops' own float
// arithmetic in their order — f = γ / √(var + ε), W·f, β + (b − μ)·f — so the result is theirs
// bit for bit (tested against folding_factor and the ops).
std::pair<Tensor, Tensor> fold_batch_norm(const Conv2d& conv, const BatchNorm2d& bn) {
  const int64_t out = conv.out_channels, per_channel = conv.weight.numel() / out;
  Tensor weight = Tensor::empty(conv.weight.shape()), bias = Tensor::empty({out});
  const float* w = conv.weight.data();
  const float* b = conv.bias.defined() ? conv.bias.data() : nullptr;
  const float *gamma = bn.weight.data(), *beta = bn.bias.data(), *mean = bn.running_mean.data(),
              *variance = bn.running_var.data();
  float* folded_weight = weight.data();
  float* folded_bias = bias.data();
  for (int64_t o = 0; o < out; ++o) {
    const float factor = gamma[o] / std::sqrt(variance[o] + bn.eps);
    for (int64_t i = 0; i < per_channel; ++i)
      folded_weight[o * per_channel + i] = w[o * per_channel + i] * factor;
    folded_bias[o] = beta[o] + ((b ? b[o] : 0.0f) - mean[o]) * factor;
  }
  return {weight, bias};
}

Tensor Sequential::forward(const Tensor& input) {
  if (!grad_mode_enabled() && input.dim() != 5) return inference_forward(*this, input);
  Tensor x = input;
  for (const auto& [name, layer] : children()) x = layer->forward(x);
  return x;
}

}  // namespace qforge::nn
