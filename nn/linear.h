// Linear: y = x·Wᵀ + b (PyTorch's nn.Linear and its default initialization:
// W, b ~ U(-1/√in, 1/√in)).
#pragma once

#include "core/random.h"
#include "nn/module.h"

namespace qforge::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator& generator);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "Linear"; }

  int64_t in_features, out_features;
  Tensor weight;  // (out,in)
  Tensor bias;    // (out) or undefined
};

}  // namespace qforge::nn
