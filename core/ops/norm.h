// batch_norm as PyTorch's F.batch_norm over (N,C) or (N,C,H,W).
// Training normalizes with the batch statistics (biased variance) and updates the
// running ones in place (unbiased variance, running = (1-momentum)·running + momentum·batch);
// evaluation normalizes with the running statistics. weight/bias may be undefined.
#pragma once

#include "core/tensor.h"

namespace qforge {

Tensor batch_norm(const Tensor& x, Tensor& running_mean, Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool is_training, float momentum = 0.1f, float eps = 1e-5f);

// channel_affine: y[n,c,...] = x[n,c,...]·scale[c] + shift[c], one pass each way — the
// per-channel rescaling of QAT's BN folding. shift may be undefined.
Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift);

}  // namespace qforge
