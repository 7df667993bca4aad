#include "quant/fuse.h"

#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/simple_layers.h"

namespace qforge::quant {

std::optional<FusionRun> match_fusion(const std::vector<std::pair<std::string, nn::ModulePtr>>& children,
                                      std::size_t first) {
  auto child = [&](std::size_t k) -> nn::ModulePtr {
    return first + k < children.size() ? children[first + k].second : nullptr;
  };
  FusionRun run;
  run.conv = std::dynamic_pointer_cast<nn::Conv2d>(child(0));
  if (!run.conv) run.linear = std::dynamic_pointer_cast<nn::Linear>(child(0));
  if (!run.conv && !run.linear) return std::nullopt;
  if (run.conv) run.bn = std::dynamic_pointer_cast<nn::BatchNorm2d>(child(1));
  run.length = run.bn ? 2 : 1;
  run.has_relu = std::dynamic_pointer_cast<nn::ReLU>(child(run.length)) != nullptr;
  run.length += run.has_relu ? 1 : 0;
  return run;
}

}  // namespace qforge::quant
