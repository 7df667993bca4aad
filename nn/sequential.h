// Sequential: children "0", "1", ... applied in order.
#pragma once

#include "nn/module.h"

namespace qforge::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> layers) {
    for (auto& layer : layers) append(std::move(layer));
  }
  void append(ModulePtr layer) { register_module(std::to_string(children().size()), std::move(layer)); }
  // Inference (no gradient wanted) runs runs of layers as one op: a ReLU followed by a
  // MaxPool2d as relu_max_pool2d (the same values in one pass instead of three); a Conv2d
  // followed by a BatchNorm2d in evaluation as one conv with the BN folded in
  // (nn::fold_batch_norm: equal to rounding), and a ReLU after it as conv2d_relu's post-op.
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "Sequential"; }
  std::size_t size() const { return children().size(); }
};

}  // namespace qforge::nn
