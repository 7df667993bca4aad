// Module fusion (PyTorch's fuse_modules): the runs of sibling layers that the integer
// runtime executes as one kernel — Conv-BN-ReLU, Conv-BN, Conv-ReLU, Conv, Linear-ReLU,
// Linear. BN folds into the conv (quant/bn_folding.h) and ReLU becomes the clamp of the
// conv's requantization, so quantizers go around the whole run, never inside it.
#pragma once

#include <memory>
#include <optional>

#include "nn/module.h"

namespace qforge::nn {
class Conv2d;
class BatchNorm2d;
class Linear;
}  // namespace qforge::nn

namespace qforge::quant {

struct FusionRun {
  std::shared_ptr<nn::Conv2d> conv;     // or
  std::shared_ptr<nn::Linear> linear;   // exactly one of the two
  std::shared_ptr<nn::BatchNorm2d> bn;  // conv only; may be null
  bool has_relu = false;
  std::size_t length = 1;  // children the run covers, starting at `first`
};

// The fusable run starting at children[first], if that child is a Conv2d or a Linear.
std::optional<FusionRun> match_fusion(const std::vector<std::pair<std::string, nn::ModulePtr>>& children,
                                      std::size_t first);

}  // namespace qforge::quant
