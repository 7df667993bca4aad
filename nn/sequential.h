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
  // The layers in order; with grad mode off, nn::inference_forward (nn/inference.h): BN
  // folded, ReLUs fused, activations kept in the blocked layout between convs.
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "Sequential"; }
  std::size_t size() const { return children().size(); }
};

}  // namespace qforge::nn
