// Forward (per batch row, per hidden unit):
//   i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
//   c = f·c_prev + i·g      h = o·tanh(c)
// Backward (dh, dc arrive as the two halves of the output gradient):
//   dc_total = dc + dh·o·(1 - tanh²c)
//   da_o = dh·tanh c·o(1-o)     da_i = dc_total·g·i(1-i)
//   da_f = dc_total·c_prev·f(1-f)   da_g = dc_total·i·(1-g²)
//   dc_prev = dc_total·f
#include "core/ops/rnn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/flop_counter.h"
#include "core/kernels/gemm.h"
#include "core/profiler.h"
#include "core/threading.h"

namespace qforge {

namespace {
// One batch row of the cell: a (4H) holds the pre-activations and receives i,f,g,o. The
// restrict pointers (every caller passes disjoint rows) let the loop vectorize.
void cell_forward_row(float* __restrict a, const float* __restrict c_prev, float* __restrict h,
                      float* __restrict c, float* __restrict tanh_c, int64_t hidden) {
  for (int64_t j = 0; j < hidden; ++j) {
    const LstmUnit u = lstm_unit(a[j], a[hidden + j], a[2 * hidden + j], a[3 * hidden + j], c_prev[j]);
    a[j] = u.i, a[hidden + j] = u.f, a[2 * hidden + j] = u.g, a[3 * hidden + j] = u.o;
    tanh_c[j] = u.tanh_c;
    h[j] = u.h;
    c[j] = u.c;
  }
}

// One batch row of the cell for inference: gates (4H) hold the GEMMs' sums, bias (4H) the
// two biases summed; c (H) holds c_{t-1} and receives c_t, h (H) receives h_t.
void cell_inference_row(const float* __restrict gates, const float* __restrict bias, float* __restrict c,
                        float* __restrict h, int64_t hidden) {
  for (int64_t j = 0; j < hidden; ++j) {
    const LstmUnit u = lstm_unit(gates[j] + bias[j], gates[hidden + j] + bias[hidden + j],
                                 gates[2 * hidden + j] + bias[2 * hidden + j],
                                 gates[3 * hidden + j] + bias[3 * hidden + j], c[j]);
    c[j] = u.c;
    h[j] = u.h;
  }
}

// One cell's pointwise forward for `batch` rows: gates (stride gate_stride) hold the
// pre-activations and receive the activations i,f,g,o; h/c rows have stride state_stride.
// The rows are independent, so they run in parallel with results equal to one thread's. A
// unit costs five transcendentals: worth a fork from a quarter of the elementwise grain on.
inline bool cell_is_parallel(int64_t batch, int64_t hidden) {
  return batch > 1 && 4 * batch * hidden >= kParallelGrain;
}

void cell_forward(float* gates, int64_t gate_stride, const float* c_prev, int64_t c_prev_stride, float* h,
                  float* c, int64_t state_stride, float* tanh_c, int64_t batch, int64_t hidden) {
#pragma omp parallel for schedule(static) if (cell_is_parallel(batch, hidden))
  for (int64_t b = 0; b < batch; ++b)
    cell_forward_row(gates + b * gate_stride, c_prev + b * c_prev_stride, h + b * state_stride,
                     c + b * state_stride, tanh_c + b * hidden, hidden);
}

// The cell's backward for one row-block: writes d(pre-activation) over `gates` order and
// dc_prev; dh, dc (rows of stride grad_stride) are the total gradients reaching h_t, c_t.
void cell_backward_row(float* __restrict da, float* __restrict dc_prev, const float* __restrict a,
                       const float* __restrict tanh_c, const float* __restrict c_prev,
                       const float* __restrict dh, const float* __restrict dc, int64_t hidden) {
  for (int64_t j = 0; j < hidden; ++j) {
    float i = a[j], f = a[hidden + j], g = a[2 * hidden + j], o = a[3 * hidden + j];
    float t = tanh_c[j];
    float dh_j = dh[j];
    float dc_total = dc[j] + dh_j * o * (1 - t * t);
    da[j] = dc_total * g * i * (1 - i);
    da[hidden + j] = dc_total * c_prev[j] * f * (1 - f);
    da[2 * hidden + j] = dc_total * i * (1 - g * g);
    da[3 * hidden + j] = dh_j * t * o * (1 - o);
    dc_prev[j] = dc_total * f;
  }
}

void cell_backward(float* d_gates, int64_t d_gate_stride, float* dc_prev, const float* act,
                   int64_t act_stride, const float* tanh_c, const float* c_prev, int64_t c_prev_stride,
                   const float* dh, const float* dc, int64_t grad_stride, int64_t batch, int64_t hidden) {
#pragma omp parallel for schedule(static) if (cell_is_parallel(batch, hidden))
  for (int64_t b = 0; b < batch; ++b)
    cell_backward_row(d_gates + b * d_gate_stride, dc_prev + b * hidden, act + b * act_stride,
                      tanh_c + b * hidden, c_prev + b * c_prev_stride, dh + b * grad_stride,
                      dc + b * grad_stride, hidden);
}
}  // namespace

Tensor lstm_cell(const Tensor& gates, const Tensor& c_prev) {
  QF_CHECK(gates.dim() == 2 && c_prev.dim() == 2 && gates.size(0) == c_prev.size(0) &&
               gates.size(1) == 4 * c_prev.size(1),
           "lstm_cell: expected gates (B,4H) and c_prev (B,H), got ", gates.shape(), " and ", c_prev.shape());
  const int64_t batch = c_prev.size(0), hidden = c_prev.size(1);
  const ProfileScope profile("forward", "lstm_cell");
  Tensor out = Tensor::empty({batch, 2 * hidden});  // [h | c]
  Tensor activations = gates.clone();               // (B,4H): pre-activations, then i, f, g, o
  Tensor tanh_c = Tensor::empty(c_prev.shape());    // (B,H)
  float* y = out.data();
  cell_forward(activations.data(), 4 * hidden, c_prev.data(), hidden, y, y + hidden, 2 * hidden,
               tanh_c.data(), batch, hidden);
  if (!any_requires_grad({&gates, &c_prev})) return out;
  Tensor saved_c_prev = c_prev.detach();
  return record(out, "lstm_cell", {gates, c_prev}, [=](const Tensor& grad, const Node&) {
    Tensor d_gates = Tensor::empty({batch, 4 * hidden}), d_c_prev = Tensor::empty({batch, hidden});
    const float* g = grad.data();
    cell_backward(d_gates.data(), 4 * hidden, d_c_prev.data(), activations.data(), 4 * hidden, tanh_c.data(),
                  saved_c_prev.data(), hidden, g, g + hidden, 2 * hidden, batch, hidden);
    return std::vector<Tensor>{d_gates, d_c_prev};
  });
}

namespace {

// lstm_layer's backward through time (the derivation above lstm_layer):
//   out: d_projected (B,T,4H), d_weight (4H,H) and d_bias (4H) — skipped when null —,
//        dh0, dc0 (B,H)
//   in:  grad (B,T,2H) = dL/d[h_t | c_t], out (B,T,2H) the forward's [h_t | c_t],
//        act (B,T,4H) the gates' i,f,g,o, tanh_c (T,B,H), w (4H,H) = W_hh, h0, c0 (B,H)
void lstm_layer_backward(float* d_projected, float* d_weight, float* d_bias, float* dh0, float* dc0,
                         const float* grad, const float* out, const float* act, const float* tanh_c,
                         const float* w, const float* h0, const float* c0, int64_t batch, int64_t steps,
                         int64_t hidden) {
  const int64_t g4 = 4 * hidden, row_gates = steps * g4, row_out = steps * 2 * hidden;
  // dh, dc: the gradients reaching h_t, c_t from step t+1 (zero past the end).
  std::vector<float> dh(batch * hidden, 0.0f), dc(batch * hidden, 0.0f), dc_prev(batch * hidden);
  std::vector<float> dh_total(batch * hidden), dc_total(batch * hidden);
  for (int64_t t = steps - 1; t >= 0; --t) {
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < hidden; ++j) {
        dh_total[b * hidden + j] = dh[b * hidden + j] + grad[b * row_out + t * 2 * hidden + j];
        dc_total[b * hidden + j] = dc[b * hidden + j] + grad[b * row_out + t * 2 * hidden + hidden + j];
      }
    const float* c_prev = t == 0 ? c0 : out + (t - 1) * 2 * hidden + hidden;
    cell_backward(d_projected + t * g4, row_gates, dc_prev.data(), act + t * g4, row_gates,
                  tanh_c + t * batch * hidden, c_prev, t == 0 ? hidden : row_out, dh_total.data(),
                  dc_total.data(), hidden, batch, hidden);
    // dh_{t-1} = d_gates_t · W_hh   (B,H)
    kernels::gemm(false, false, batch, hidden, g4, 1.0f, d_projected + t * g4, row_gates, w, hidden, 0.0f,
                  dh.data(), hidden);
    std::swap(dc, dc_prev);
  }
  std::copy(dh.begin(), dh.end(), dh0);
  std::copy(dc.begin(), dc.end(), dc0);
  if (d_weight) {                                       // dW_hh = Σ_t d_gates_tᵀ · h_{t-1}
    std::vector<float> h_prev(batch * steps * hidden);  // (B,T,H): h_{t-1} at [:,t]
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < steps; ++t)
        std::copy_n(t == 0 ? h0 + b * hidden : out + b * row_out + (t - 1) * 2 * hidden, hidden,
                    h_prev.data() + (b * steps + t) * hidden);
    kernels::gemm(true, false, g4, hidden, batch * steps, 1.0f, d_projected, g4, h_prev.data(), hidden, 0.0f,
                  d_weight, hidden);
  }
  if (d_bias) {  // db_hh = Σ_{b,t} d_gates
    std::fill_n(d_bias, g4, 0.0f);
    for (int64_t r = 0; r < batch * steps; ++r)
      for (int64_t k = 0; k < g4; ++k) d_bias[k] += d_projected[r * g4 + k];
  }
  count_multiply_adds(static_cast<double>(batch) * steps * g4 * hidden * (1 + (d_weight != nullptr)));
}

}  // namespace

// Forward, step t (rows b of the (B,T,·) buffers, strides in brackets):
//   gates_t = projected[:,t] + h_{t-1}·W_hhᵀ + b_hh      (one GEMM with beta = 1)
//   [h_t | c_t] = cell(gates_t, c_{t-1})
// Backward, t = T-1 .. 0, carrying dh, dc from step t+1:
//   d_gates_t = cell_backward(dh + dout_h[t], dc + dout_c[t])   -> d_projected[:,t]
//   dh = d_gates_t·W_hh,  dc = dc_total·f
// then once: dW_hh = d_projectedᵀ·H_prev,  db_hh = Σ d_projected, where H_prev[:,t] = h_{t-1}.
Tensor lstm_layer(const Tensor& projected, const Tensor& weight_hh, const Tensor& bias_hh, const Tensor& h0,
                  const Tensor& c0) {
  QF_CHECK(projected.dim() == 3 && weight_hh.dim() == 2 && projected.size(2) == weight_hh.size(0) &&
               weight_hh.size(0) == 4 * weight_hh.size(1),
           "lstm_layer: expected projected (B,T,4H) and weight_hh (4H,H), got ", projected.shape(), " and ",
           weight_hh.shape());
  const int64_t batch = projected.size(0), steps = projected.size(1), hidden = weight_hh.size(1);
  const Shape state{batch, hidden};
  QF_CHECK(bias_hh.shape() == Shape{4 * hidden} && h0.shape() == state && c0.shape() == state,
           "lstm_layer: expected bias_hh [", 4 * hidden, "] and h0, c0 ", state, ", got ", bias_hh.shape(),
           ", ", h0.shape(), ", ", c0.shape());
  const int64_t g4 = 4 * hidden, row_gates = steps * g4, row_out = steps * 2 * hidden;
  const ProfileScope profile("forward", "lstm_layer", [&] { return shape_to_string(projected.shape()); });
  Tensor out = Tensor::empty({batch, steps, 2 * hidden});  // [h_t | c_t]
  Tensor activations = projected.clone();                  // (B,T,4H): pre-activations, then i,f,g,o
  Tensor tanh_c = Tensor::empty({steps, batch, hidden});
  float* act = activations.data();
  float* y = out.data();
  const float* w = weight_hh.data();
  const float* bias = bias_hh.data();
  for (int64_t t = 0; t < steps; ++t) {
    float* gates = act + t * g4;  // rows b at stride row_gates
#pragma omp parallel for schedule(static) if (cell_is_parallel(batch, hidden))
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t k = 0; k < g4; ++k) gates[b * row_gates + k] += bias[k];
    const float* h_prev = t == 0 ? h0.data() : y + (t - 1) * 2 * hidden;
    const int64_t h_stride = t == 0 ? hidden : row_out;
    kernels::gemm(false, true, batch, g4, hidden, 1.0f, h_prev, h_stride, w, hidden, 1.0f, gates, row_gates);
    const float* c_prev = t == 0 ? c0.data() : y + (t - 1) * 2 * hidden + hidden;
    cell_forward(gates, row_gates, c_prev, t == 0 ? hidden : row_out, y + t * 2 * hidden,
                 y + t * 2 * hidden + hidden, row_out, tanh_c.data() + t * batch * hidden, batch, hidden);
  }
  count_multiply_adds(static_cast<double>(batch) * steps * g4 * hidden);
  if (!any_requires_grad({&projected, &weight_hh, &bias_hh, &h0, &c0})) return out;

  // Saved for backward: out (B,T,2H) = [h_t | c_t], activations (B,T,4H) = i,f,g,o,
  // tanh_c (T,B,H), weight_hh (4H,H), h0 and c0 (B,H).
  Tensor saved_out = out.detach(), saved_w = weight_hh.detach(), saved_h0 = h0.detach(),
         saved_c0 = c0.detach();
  return record(out, "lstm_layer", {projected, weight_hh, bias_hh, h0, c0},
                [=](const Tensor& grad, const Node& node) {
                  Tensor d_projected = Tensor::empty({batch, steps, g4});
                  Tensor d_weight = node.needs_grad(1) ? Tensor::empty(saved_w.shape()) : Tensor();
                  Tensor d_bias = node.needs_grad(2) ? Tensor::empty({g4}) : Tensor();
                  Tensor dh0 = Tensor::empty(state), dc0 = Tensor::empty(state);
                  lstm_layer_backward(d_projected.data(), d_weight.defined() ? d_weight.data() : nullptr,
                                      d_bias.defined() ? d_bias.data() : nullptr, dh0.data(), dc0.data(),
                                      grad.data(), saved_out.data(), activations.data(), tanh_c.data(),
                                      saved_w.data(), saved_h0.data(), saved_c0.data(), batch, steps, hidden);
                  return std::vector<Tensor>{d_projected, d_weight, d_bias, dh0, dc0};
                });
}

// Note [LSTM inference]
// With nothing to save for backward, a layer needs none of lstm_layer's (B,T,·) buffers:
// not the projection of all steps (B,T,4H), nor the gates' activations, nor tanh c. What
// is left is a recurrence whose batch rows never meet: row b's step t reads only row b's
// h_{t-1} and c_{t-1}. So each thread takes a block of rows for all T steps, and per step
//   gates = x_t·W_ihᵀ + h_{t-1}·W_hhᵀ            (two GEMMs into the thread's own buffer)
//   [h_t, c_t] = lstm_unit(gates + b_ih + b_hh, c_{t-1})
// with no barrier between steps. The GEMMs run inside the parallel region, so oneDNN runs
// each on its calling thread. The gate buffer (rows × 4H) stays in cache from the GEMMs to
// the cell; c is updated in place. The cell is lstm_unit's, as everywhere; the sums differ
// from lstm_layer's in order (bias last, not first), so the two agree to rounding
// (tests/core/test_rnn.cpp), and a row's floats do not depend on the thread count.
LstmLayerStates lstm_layer_inference(const Tensor& x, const Tensor& weight_ih, const Tensor& weight_hh,
                                     const Tensor& bias_ih, const Tensor& bias_hh, const Tensor& h0,
                                     const Tensor& c0) {
  QF_CHECK(x.dim() == 3 && weight_ih.dim() == 2 && weight_hh.dim() == 2 &&
               weight_hh.size(0) == 4 * weight_hh.size(1) && weight_ih.size(0) == weight_hh.size(0) &&
               weight_ih.size(1) == x.size(2),
           "lstm_layer_inference: expected x (B,T,in), weight_ih (4H,in) and weight_hh (4H,H), got ",
           x.shape(), ", ", weight_ih.shape(), " and ", weight_hh.shape());
  const int64_t batch = x.size(0), steps = x.size(1), in = x.size(2), hidden = weight_hh.size(1),
                g4 = 4 * hidden;
  const Shape state{batch, hidden};
  QF_CHECK(bias_ih.shape() == Shape{g4} && bias_hh.shape() == Shape{g4} && h0.shape() == state &&
               c0.shape() == state,
           "lstm_layer_inference: expected bias_ih, bias_hh [", g4, "] and h0, c0 ", state, ", got ",
           bias_ih.shape(), ", ", bias_hh.shape(), ", ", h0.shape(), ", ", c0.shape());
  const ProfileScope profile("forward", "lstm_layer",
                             [&] { return shape_to_string(x.shape()) + " inference"; });
  Tensor h = Tensor::empty({batch, steps, hidden});
  Tensor c = c0.clone();
  std::vector<float> bias(g4);
  for (int64_t k = 0; k < g4; ++k) bias[k] = bias_ih.data()[k] + bias_hh.data()[k];
  const float *xs = x.data(), *w_ih = weight_ih.data(), *w_hh = weight_hh.data(), *h_init = h0.data();
  float *hs = h.data(), *cs = c.data();
  auto run_rows = [&](const RowBlock& block) {
    const int64_t first = block.first, rows = block.count;
    StepProjections gates(rows, steps, g4);
    const float* x_rows = xs + first * steps * in;
    if (gates.ahead())
      kernels::gemm(false, true, rows * steps, g4, in, 1.0f, x_rows, in, w_ih, in, 0.0f, gates.data(), g4);
    for (int64_t t = 0; t < steps; ++t) {
      float* gates_t = gates.step(t);
      if (!gates.ahead())
        kernels::gemm(false, true, rows, g4, in, 1.0f, x_rows + t * in, steps * in, w_ih, in, 0.0f, gates_t,
                      g4);
      const float* h_prev = t == 0 ? h_init + first * hidden : hs + (first * steps + t - 1) * hidden;
      const int64_t h_stride = t == 0 ? hidden : steps * hidden;
      kernels::gemm(false, true, rows, g4, hidden, 1.0f, h_prev, h_stride, w_hh, hidden, 1.0f, gates_t,
                    gates.stride());
      for (int64_t r = 0; r < rows; ++r)
        cell_inference_row(gates_t + r * gates.stride(), bias.data(), cs + (first + r) * hidden,
                           hs + ((first + r) * steps + t) * hidden, hidden);
    }
  };
  parallel_row_blocks(batch, g4, run_rows);
  count_multiply_adds(static_cast<double>(batch) * steps * g4 * (in + hidden));
  return {h, c};
}

}  // namespace qforge
