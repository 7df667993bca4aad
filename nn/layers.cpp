// The parameterized layers' constructors and forwards: thin calls into core ops; and
// Sequential's forward.
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
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
    : in_channels(in_channels), out_channels(out_channels), kernel_size(kernel_size), options(options) {
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

Tensor Sequential::forward(const Tensor& input) {
  Tensor x = input;
  const auto& layers = children();
  for (std::size_t k = 0; k < layers.size(); ++k) {
    if (k + 1 < layers.size() && !any_requires_grad({&x}) && dynamic_cast<ReLU*>(layers[k].second.get()))
      if (auto* pool = dynamic_cast<MaxPool2d*>(layers[k + 1].second.get())) {
        x = relu_max_pool2d(x, pool->options);
        ++k;
        continue;
      }
    x = layers[k].second->forward(x);
  }
  return x;
}

}  // namespace qforge::nn
