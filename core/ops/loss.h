// log_softmax and the losses: cross_entropy from logits (PyTorch's F.cross_entropy with
// reduction='mean' and optional label_smoothing), mse_loss (mean) and distillation_loss.
#pragma once

#include "core/tensor.h"

namespace qforge {

Tensor log_softmax(const Tensor& x, int64_t axis = -1);
//   logits (N,C), targets (N) s32 class indices in [0, C)
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, float label_smoothing = 0.0f);
Tensor mse_loss(const Tensor& prediction, const Tensor& target);
// Knowledge distillation (Hinton et al. 2015): T²·(1/N)·Σ_n KL(softmax(t_n/T) ‖ softmax(s_n/T)),
// PyTorch's F.kl_div(F.log_softmax(s/T), F.softmax(t/T), reduction='batchmean')·T².
// student and teacher logits (N,C); the teacher is a constant (no gradient).
Tensor distillation_loss(const Tensor& student, const Tensor& teacher, float temperature);

}  // namespace qforge
