// lstm_cell: the pointwise half of one LSTM step, fused into one op. The caller does the
// GEMMs (all time steps' input projections at once, then h·W_hhᵀ per step) and passes
// the summed gate pre-activations; gate order i, f, g, o as in PyTorch's nn.LSTM.
//   gates (B,4H), c_prev (B,H) -> (B,2H) holding [h | c]
#pragma once

#include "core/kernels/activation.h"
#include "core/tensor.h"

namespace qforge {

Tensor lstm_cell(const Tensor& gates, const Tensor& c_prev);

// The cell's nonlinearities as lstm_cell computes them (core/kernels/activation.h) — shared
// with the integer LSTMs (and their lookup tables) so all compute the same floats.
inline float lstm_sigmoid(float v) { return kernels::sigmoid_float(v); }
inline float lstm_tanh(float v) { return kernels::tanh_float(v); }

// lstm_layer: a whole LSTM layer over T steps as one op, with hand-written
// backpropagation through time. The caller projects the inputs of all steps first.
//   projected (B,T,4H) = x·W_ihᵀ + b_ih,  weight_hh (4H,H),  bias_hh (4H),
//   h0, c0 (B,H)  ->  (B,T,2H) holding [h_t | c_t] for every step t
Tensor lstm_layer(const Tensor& projected, const Tensor& weight_hh, const Tensor& bias_hh, const Tensor& h0,
                  const Tensor& c0);

}  // namespace qforge
