// batch_norm as PyTorch's F.batch_norm over (N,C) or (N,C,H,W).
// Training normalizes with the batch statistics (biased variance) and updates the
// running ones in place (unbiased variance, running = (1-momentum)·running + momentum·batch);
// evaluation normalizes with the running statistics. weight/bias may be undefined.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace qforge {

// SyncBatchNorm (PyTorch's nn.SyncBatchNorm): where one batch is spread over several
// processes, training sums the per-channel sums — of x, of (x − μ)², and in backward of g
// and g·x̂ — across them, so every process normalizes with the whole batch's μ and σ and
// backpropagates through them; dγ and dβ stay this process's part (the gradient allreduce
// sums them). train/distributed.h supplies the sum; every process must call batch_norm
// (and its backward) in the same order.
class SumAcrossProcesses {
 public:
  virtual ~SumAcrossProcesses() = default;
  virtual void sum(double* values, int64_t count) const = 0;  // in place, elementwise
};

Tensor batch_norm(const Tensor& x, Tensor& running_mean, Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool is_training, float momentum = 0.1f, float eps = 1e-5f,
                  const SumAcrossProcesses* across = nullptr);

// batch_norm_relu: relu(batch_norm(...)) as one op — the same values and gradients; the
// ReLU is applied as the normalized values are written and its mask recomputed in backward,
// so neither direction makes a pass of its own. Not yet used by nn::Sequential: docs/kernels.md
// ("Batch norm in training") says what holds it back.
Tensor batch_norm_relu(const Tensor& x, Tensor& running_mean, Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, bool is_training, float momentum = 0.1f, float eps = 1e-5f,
                       const SumAcrossProcesses* across = nullptr);

// affine_batch_norm: batch_norm(channel_affine(x, scale, shift), ...) as one op — the same
// values, but the affine's output z = x·scale[c] + shift[c] is computed where it is read and
// never stored, which spares its write and its reads both ways (QAT's folded conv and BN,
// quant/bn_folding.cpp). shift may be undefined.
Tensor affine_batch_norm(const Tensor& x, const Tensor& scale, const Tensor& shift, Tensor& running_mean,
                         Tensor& running_var, const Tensor& weight, const Tensor& bias, bool is_training,
                         float momentum = 0.1f, float eps = 1e-5f,
                         const SumAcrossProcesses* across = nullptr);

// channel_affine: y[n,c,...] = x[n,c,...]·scale[c] + shift[c], one pass each way — the
// per-channel rescaling of QAT's BN folding. shift may be undefined.
Tensor channel_affine(const Tensor& x, const Tensor& scale, const Tensor& shift);

}  // namespace qforge
