// log_softmax and the losses: cross_entropy from logits (PyTorch's F.cross_entropy with
// reduction='mean' and optional label_smoothing) and mse_loss (mean).
#pragma once

#include "core/tensor.h"

namespace qforge {

Tensor log_softmax(const Tensor& x, int64_t axis = -1);
//   logits (N,C), targets (N) s32 class indices in [0, C)
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, float label_smoothing = 0.0f);
Tensor mse_loss(const Tensor& prediction, const Tensor& target);

}  // namespace qforge
