// CIFAR-style ResNet-(6n+2) (He et al. 2016, §4.2) for 1×28×28 input: a 3×3 stem of 16
// channels, three stages of n BasicBlocks with 16/32/64 channels (stride 2 entering
// stages 2 and 3), global average pooling and a linear classifier. Shortcuts that change
// shape are 1×1 convolutions with BatchNorm ("option B"). Convolutions have no bias.
#pragma once

#include "core/random.h"
#include "nn/module.h"

namespace qforge::nn {

class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_channels, int64_t out_channels, int64_t stride, Generator& generator);
  // A residual block from its parts (a layer list's "residual", an imported ONNX graph):
  // y = relu(residual(x) + shortcut(x)), the relu an Identity when has_relu is false and the
  // shortcut the identity when null.
  BasicBlock(ModulePtr residual, ModulePtr shortcut, bool has_relu);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "BasicBlock"; }

  // y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); three children, in this
  // order: residual, [shortcut], relu. `residual` is the sequence before the add, so
  // quantization can rewrite it as one unit.
  ModulePtr residual;  // Sequential(conv1, bn1, relu1, conv2, bn2)
  ModulePtr shortcut;  // Sequential(conv 1×1, bn) or null for identity
  ModulePtr relu;      // after the add (an Identity in a block without one)

 protected:
  void child_replaced(const std::string& name, const ModulePtr& module) override;
};

class ResNet : public Module {
 public:
  ResNet(int64_t blocks_per_stage, int64_t in_channels, int64_t num_classes, Generator& generator);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "ResNet"; }

  ModulePtr stem;    // Sequential(conv, bn, relu)
  ModulePtr layers;  // Sequential(blocks)
  ModulePtr head;    // Sequential(pool, flatten, fc)

 protected:
  void child_replaced(const std::string& name, const ModulePtr& module) override;
};

}  // namespace qforge::nn
