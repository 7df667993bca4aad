#include "nn/resnet.h"

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/inference.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"

namespace qforge::nn {

BasicBlock::BasicBlock(int64_t in_channels, int64_t out_channels, int64_t stride, Generator& generator) {
  auto residual_layers = std::make_shared<Sequential>();
  residual_layers->append(std::make_shared<Conv2d>(in_channels, out_channels, 3,
                                                   Conv2dOptions::square(stride, 1), false, generator));
  residual_layers->append(std::make_shared<BatchNorm2d>(out_channels));
  residual_layers->append(std::make_shared<ReLU>());
  residual_layers->append(
      std::make_shared<Conv2d>(out_channels, out_channels, 3, Conv2dOptions::square(1, 1), false, generator));
  residual_layers->append(std::make_shared<BatchNorm2d>(out_channels));
  residual = register_module("residual", residual_layers);
  if (stride != 1 || in_channels != out_channels) {
    auto projection = std::make_shared<Sequential>();
    projection->append(std::make_shared<Conv2d>(in_channels, out_channels, 1, Conv2dOptions::square(stride),
                                                false, generator));
    projection->append(std::make_shared<BatchNorm2d>(out_channels));
    shortcut = register_module("shortcut", projection);
  }
  relu = register_module("relu", std::make_shared<ReLU>());
}

BasicBlock::BasicBlock(ModulePtr residual_layers, ModulePtr shortcut_layers, bool has_relu) {
  QF_CHECK(residual_layers, "BasicBlock: the residual branch is empty");
  residual = register_module("residual", std::move(residual_layers));
  if (shortcut_layers) shortcut = register_module("shortcut", std::move(shortcut_layers));
  relu =
      register_module("relu", has_relu ? ModulePtr(std::make_shared<ReLU>()) : std::make_shared<Identity>());
}

Tensor BasicBlock::forward(const Tensor& input) {
  if (!grad_mode_enabled() && input.dim() != 5) return inference_forward(*this, input);
  Tensor y = residual->forward(input);
  return relu->forward(add(y, shortcut ? shortcut->forward(input) : input));
}

ResNet::ResNet(int64_t blocks_per_stage, int64_t in_channels, int64_t num_classes, Generator& generator) {
  QF_CHECK(blocks_per_stage >= 1, "ResNet: blocks per stage must be >= 1");
  stem = register_module(
      "stem", std::make_shared<Sequential>(std::vector<ModulePtr>{
                  std::make_shared<Conv2d>(in_channels, 16, 3, Conv2dOptions::square(1, 1), false, generator),
                  std::make_shared<BatchNorm2d>(16), std::make_shared<ReLU>()}));
  auto blocks = std::make_shared<Sequential>();
  int64_t channels = 16;
  for (int64_t width : {16, 32, 64})
    for (int64_t i = 0; i < blocks_per_stage; ++i) {
      int64_t stride = (i == 0 && width != 16) ? 2 : 1;
      blocks->append(std::make_shared<BasicBlock>(channels, width, stride, generator));
      channels = width;
    }
  layers = register_module("layers", blocks);
  head = register_module("head", std::make_shared<Sequential>(std::vector<ModulePtr>{
                                     std::make_shared<AdaptiveAvgPool2d>(1, 1), std::make_shared<Flatten>(),
                                     std::make_shared<Linear>(64, num_classes, true, generator)}));
}

Tensor ResNet::forward(const Tensor& input) {
  if (!grad_mode_enabled() && input.dim() != 5) return inference_forward(*this, input);
  return head->forward(layers->forward(stem->forward(input)));
}

void BasicBlock::child_replaced(const std::string& name, const ModulePtr& module) {
  if (name == "residual") residual = module;
  if (name == "shortcut") shortcut = module;
  if (name == "relu") relu = module;
}

void ResNet::child_replaced(const std::string& name, const ModulePtr& module) {
  if (name == "stem") stem = module;
  if (name == "layers") layers = module;
  if (name == "head") head = module;
}

}  // namespace qforge::nn
