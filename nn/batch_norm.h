// BatchNorm2d (PyTorch's nn.BatchNorm2d): affine γ=1, β=0; running mean 0, variance 1;
// momentum 0.1, eps 1e-5. Training uses batch statistics and updates the running ones.
#pragma once

#include "core/ops/norm.h"
#include "nn/module.h"

#include <utility>

namespace qforge::nn {

class Conv2d;

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, float eps = 1e-5f, float momentum = 0.1f);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "BatchNorm2d"; }

  int64_t channels;
  float eps, momentum;
  Tensor weight, bias;               // γ, β (C)
  Tensor running_mean, running_var;  // buffers (C)
  // SyncBatchNorm: statistics over every process's part of the batch (core/ops/norm.h);
  // null: this process's rows alone. Set by data-parallel training (train.sync_batchnorm).
  const SumAcrossProcesses* sync = nullptr;
};

// Note [BN folding] (quant/bn_folding.h): a conv followed by this BN in evaluation is one
// conv with weights W·f and bias β + (b − μ)·f, f = γ/√(running_var + ε) — what convert
// deploys, and what Sequential runs for inference (no gradient, BN in evaluation): one pass
// over the activation instead of two. No gradient is recorded.
Tensor folding_factor(const BatchNorm2d& bn);  // f, (C)
std::pair<Tensor, Tensor> fold_batch_norm(const Conv2d& conv, const BatchNorm2d& bn);

}  // namespace qforge::nn
