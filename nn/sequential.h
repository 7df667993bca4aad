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
  Tensor forward(const Tensor& input) override {
    Tensor x = input;
    for (const auto& [name, child] : children()) x = child->forward(x);
    return x;
  }
  std::string type_name() const override { return "Sequential"; }
  std::size_t size() const { return children().size(); }
};

}  // namespace qforge::nn
