// lstm_cell: the pointwise half of one LSTM step, fused into one op. The caller does the
// GEMMs (all time steps' input projections at once, then h·W_hhᵀ per step) and passes
// the summed gate pre-activations; gate order i, f, g, o as in PyTorch's nn.LSTM.
//   gates (B,4H), c_prev (B,H) -> (B,2H) holding [h | c]
#pragma once

#include "core/tensor.h"

namespace qforge {

Tensor lstm_cell(const Tensor& gates, const Tensor& c_prev);

}  // namespace qforge
