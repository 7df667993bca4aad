#include "nn/inference.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <tuple>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"

namespace qforge::nn {

// Note [Inference weights]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Inference folds a conv's BatchNorm into its weights, and oneDNN reorders those into its
// blocked layout, on every call; at batch 1 that cost more than some of the convs (resnet20:
// the fold alone 0.12 of 0.64 ms). Each Conv2d keeps the result instead: the folded weight
// and bias, the reordered floats (kernels::ReorderedWeights), and a copy of every parameter
// they came from. Each call compares the parameters with the copy, byte for byte, and
// rebuilds on any difference — an optimizer step, a loaded checkpoint, a BatchNorm update, a
// write through data() — so no caller has to say that weights changed, and no change is
// missed. The comparison reads the parameters once, where the fold also wrote them and the
// reorder moved them again.
void InferenceWeights::update(const Conv2d& conv, const BatchNorm2d* bn) {
  std::vector<const Tensor*> parameters{&conv.weight, &conv.bias};
  if (bn) parameters.insert(parameters.end(), {&bn->weight, &bn->bias, &bn->running_mean, &bn->running_var});
  const float eps = bn ? bn->eps : 0.0f;
  auto same = [&] {
    if (sizes.size() != parameters.size() + 1 || !weight.defined() || weight.shape() != conv.weight.shape())
      return false;
    std::size_t offset = 0;
    for (std::size_t i = 0; i < parameters.size(); ++i) {
      const Tensor& p = *parameters[i];
      const int64_t size = p.defined() ? p.numel() : -1;
      if (sizes[i] != size) return false;
      if (size > 0 && std::memcmp(source.data() + offset, p.data(), size * sizeof(float)) != 0) return false;
      offset += std::max<int64_t>(size, 0);
    }
    return std::bit_cast<uint32_t>(source[offset]) == std::bit_cast<uint32_t>(eps);
  };
  if (same()) return;
  sizes.clear(), source.clear();
  for (const Tensor* p : parameters) {
    sizes.push_back(p->defined() ? p->numel() : -1);
    if (p->defined()) source.insert(source.end(), p->data(), p->data() + p->numel());
  }
  sizes.push_back(1), source.push_back(eps);
  if (bn) {
    std::tie(weight, bias) = fold_batch_norm(conv, *bn);
  } else {  // copies: the conv's own tensors may change under the same storage
    weight = conv.weight.detach().clone();
    bias = conv.bias.defined() ? conv.bias.detach().clone() : Tensor();
  }
  reordered.clear();
}

namespace {

// An activation on its way through: blocked ([N, C/B, H, W, B]) or NCHW.
Tensor plain(const Tensor& x) { return x.dim() == 5 ? from_channel_blocked(x) : x; }

// What a residual block asks of its residual sequence's last conv: add `shortcut` (blocked,
// the conv's output shape) and apply the block's ReLU (or not) as it writes.
struct Tail {
  Tensor shortcut;
  bool relu = false;
  bool fused = false;  // set when the last conv took it
};

Tensor run(Module& module, const Tensor& x);

Tensor run_sequence(const Sequential& sequence, Tensor x, Tail* tail) {
  const auto& layers = sequence.children();
  auto layer = [&](std::size_t k) { return k < layers.size() ? layers[k].second.get() : nullptr; };
  for (std::size_t k = 0; k < layers.size(); ++k) {
    if (auto* conv = dynamic_cast<Conv2d*>(layer(k))) {
      // Conv2d [→ BatchNorm2d in evaluation] [→ ReLU]: one conv.
      auto* bn = dynamic_cast<BatchNorm2d*>(layer(k + 1));
      if (bn && bn->is_training()) bn = nullptr;
      const std::size_t after = bn ? k + 2 : k + 1;
      const bool relu = dynamic_cast<ReLU*>(layer(after)) != nullptr;
      InferenceWeights& kept = *conv->inference_weights;
      const std::lock_guard lock(kept.mutex);
      kept.update(*conv, bn);
      const Tensor &weight = kept.weight, &bias = kept.bias;
      const bool blocked = conv2d_blocked_applies(x, weight, conv->options);
      if (tail && !relu && after == layers.size() && blocked && tail->shortcut.dim() == 5) {
        // The shortcut's activation is this walk's own (a blocked one) and read by no one
        // after the block: the conv adds onto it in place, unless it is the conv's input.
        if (tail->shortcut.data() == x.data()) {
          x = conv2d_blocked(x, weight, bias, conv->options, tail->relu, tail->shortcut, &kept.reordered);
        } else {
          conv2d_blocked_onto(tail->shortcut, x, weight, bias, conv->options, tail->relu, &kept.reordered);
          x = tail->shortcut;
        }
        tail->fused = true;
        return x;
      }
      // A ReLU before a MaxPool2d on NCHW stays for relu_max_pool2d below.
      const bool post_relu = relu && (blocked || !dynamic_cast<MaxPool2d*>(layer(after + 1)));
      if (blocked)
        x = conv2d_blocked(x, weight, bias, conv->options, post_relu, Tensor(), &kept.reordered);
      else
        x = post_relu ? conv2d_relu(plain(x), weight, bias, conv->options)
                      : conv2d(plain(x), weight, bias, conv->options);
      k = post_relu ? after : after - 1;
      continue;
    }
    Module* child = layer(k);
    auto* next_pool = dynamic_cast<MaxPool2d*>(layer(k + 1));
    if (dynamic_cast<ReLU*>(child) && next_pool && x.dim() == 4) {
      x = relu_max_pool2d(x, next_pool->options);
      ++k;
      continue;
    }
    if (dynamic_cast<ReLU*>(child) || dynamic_cast<Identity*>(child)) {
      x = child->forward(x);  // elementwise: the same on either layout
      continue;
    }
    if (auto* pool = dynamic_cast<MaxPool2d*>(child); pool && x.dim() == 5) {
      x = max_pool2d_blocked(x, pool->options);
      continue;
    }
    if (auto* pool = dynamic_cast<AdaptiveAvgPool2d*>(child); pool && x.dim() == 5) {
      x = adaptive_avg_pool2d_blocked(x, pool->out_height, pool->out_width);
      continue;
    }
    x = run(*child, x);
  }
  return x;
}

Tensor run_block(const BasicBlock& block, const Tensor& x) {
  const Tensor shortcut = block.shortcut ? run(*block.shortcut, x) : x;
  const bool relu = dynamic_cast<ReLU*>(block.relu.get()) != nullptr;
  const bool identity = dynamic_cast<Identity*>(block.relu.get()) != nullptr;
  auto* residual = dynamic_cast<Sequential*>(block.residual.get());
  if (residual && (relu || identity)) {
    Tail tail{.shortcut = shortcut, .relu = relu};
    Tensor y = run_sequence(*residual, x, &tail);
    if (tail.fused) return y;
    return block.relu->forward(add(plain(y), plain(shortcut)));
  }
  const Tensor y = run(*block.residual, x);
  return block.relu->forward(add(plain(y), plain(shortcut)));
}

Tensor run(Module& module, const Tensor& x) {
  if (auto* sequence = dynamic_cast<Sequential*>(&module)) return run_sequence(*sequence, x, nullptr);
  if (auto* block = dynamic_cast<BasicBlock*>(&module)) return run_block(*block, x);
  if (auto* net = dynamic_cast<ResNet*>(&module))
    return run(*net->head, run(*net->layers, run(*net->stem, x)));
  return module.forward(plain(x));
}

}  // namespace

Tensor inference_forward(Module& module, const Tensor& input) {
  QF_CHECK(!grad_mode_enabled(), module.type_name(), ": inference_forward runs under a NoGradGuard only");
  // Blocked activations are 5-D, and a block's shortcut is written in place: a 5-D input
  // would be taken for one of this walk's own.
  QF_CHECK(input.dim() != 5, module.type_name(), ": inference takes (N,C,H,W) or flat inputs, got ",
           input.shape());
  return plain(run(module, input));
}

}  // namespace qforge::nn
