// Conv2d (PyTorch's nn.Conv2d and its default initialization: W, b ~ U(-1/√fan_in, 1/√fan_in),
// fan_in = C/groups·KH·KW).
#pragma once

#include <memory>

#include "core/ops/conv.h"
#include "core/random.h"
#include "nn/module.h"

namespace qforge::nn {

// What inference keeps of a conv between calls (Note [Inference weights], nn/inference.cpp).
struct InferenceWeights;

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, const Conv2dOptions& options,
         bool has_bias, Generator& generator);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "Conv2d"; }

  int64_t in_channels, out_channels, kernel_size;
  Conv2dOptions options;
  Tensor weight;  // (O,C/groups,K,K)
  Tensor bias;    // (O) or undefined
  // Inference's weights (with a BatchNorm after the conv folded in) and their reordered
  // floats, checked against the parameters at every use; made with the conv.
  std::shared_ptr<InferenceWeights> inference_weights;
};

}  // namespace qforge::nn
