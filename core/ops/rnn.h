// lstm_cell: the pointwise half of one LSTM step, fused into one op. The caller does the
// GEMMs (all time steps' input projections at once, then h·W_hhᵀ per step) and passes
// the summed gate pre-activations; gate order i, f, g, o as in PyTorch's nn.LSTM.
//   gates (B,4H), c_prev (B,H) -> (B,2H) holding [h | c]
#pragma once

#include <vector>

#include "core/kernels/activation.h"
#include "core/tensor.h"

namespace qforge {

Tensor lstm_cell(const Tensor& gates, const Tensor& c_prev);

// The cell's nonlinearities as lstm_cell computes them (core/kernels/activation.h) — shared
// with the integer LSTMs (and their lookup tables) so all compute the same floats.
inline float lstm_sigmoid(float v) { return kernels::sigmoid_float(v); }
inline float lstm_tanh(float v) { return kernels::tanh_float(v); }

// One hidden unit of the cell from its four gate pre-activations (order i, f, g, o):
//   c = f·c_prev + i·g,  h = o·tanh(c).
// Every float LSTM computes a unit through this — lstm_cell and lstm_layer here, the
// dynamic int8 LSTM (quant/int8/lstm_ops.cpp) — so they agree bit for bit.
struct LstmUnit {
  float i, f, g, o, c, tanh_c, h;
};
inline LstmUnit lstm_unit(float i_pre, float f_pre, float g_pre, float o_pre, float c_prev) {
  LstmUnit u;
  u.i = lstm_sigmoid(i_pre), u.f = lstm_sigmoid(f_pre), u.g = lstm_tanh(g_pre), u.o = lstm_sigmoid(o_pre);
  u.c = u.f * c_prev + u.i * u.g;
  u.tanh_c = lstm_tanh(u.c);
  u.h = u.o * u.tanh_c;
  return u;
}

// lstm_layer: a whole LSTM layer over T steps as one op, with hand-written
// backpropagation through time. The caller projects the inputs of all steps first.
//   projected (B,T,4H) = x·W_ihᵀ + b_ih,  weight_hh (4H,H),  bias_hh (4H),
//   h0, c0 (B,H)  ->  (B,T,2H) holding [h_t | c_t] for every step t
Tensor lstm_layer(const Tensor& projected, const Tensor& weight_hh, const Tensor& bias_hh, const Tensor& h0,
                  const Tensor& c0);

// lstm_layer_inference: one whole LSTM layer, input projection included, for grad mode off
// (records nothing). Note [LSTM inference] in rnn.cpp says how it differs from the above.
//   x (B,T,in), weight_ih (4H,in), weight_hh (4H,H), bias_ih, bias_hh (4H), h0, c0 (B,H)
//   ->  h (B,T,H) for every step, c (B,H) after the last step
// A block of rows' input products x·W_ihᵀ (4H floats a row and step) in an LSTM's inference
// (Note [LSTM inference], the integer LSTMs too): for a few rows — latency — every step's at
// once, ahead of the recurrence, in one call; for more, one step's at a time into a rows × 4H
// buffer that stays in cache, where all steps' would go through memory.
class StepProjections {
 public:
  StepProjections(int64_t rows, int64_t steps, int64_t gates)
      : ahead_(rows * steps * gates <= kAheadFloats),
        steps_(steps),
        gates_(gates),
        buffer_(ahead_ ? rows * steps * gates : rows * gates) {}
  bool ahead() const { return ahead_; }
  // Where the products are written: ahead, (rows·T, 4H) with row r·T + t; else (rows, 4H).
  float* data() { return buffer_.data(); }
  // Step t's products: row r at step(t) + r·stride().
  float* step(int64_t t) { return buffer_.data() + (ahead_ ? t * gates_ : 0); }
  int64_t stride() const { return ahead_ ? steps_ * gates_ : gates_; }

 private:
  static constexpr int64_t kAheadFloats = int64_t{1} << 16;
  bool ahead_;
  int64_t steps_, gates_;
  std::vector<float> buffer_;
};

struct LstmLayerStates {
  Tensor h, c;
};
LstmLayerStates lstm_layer_inference(const Tensor& x, const Tensor& weight_ih, const Tensor& weight_hh,
                                     const Tensor& bias_ih, const Tensor& bias_hh, const Tensor& h0,
                                     const Tensor& c0);

}  // namespace qforge
