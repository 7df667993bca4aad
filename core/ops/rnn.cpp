// Forward (per batch row, per hidden unit):
//   i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
//   c = f·c_prev + i·g      h = o·tanh(c)
// Backward (dh, dc arrive as the two halves of the output gradient):
//   dc_total = dc + dh·o·(1 - tanh²c)
//   da_o = dh·tanh c·o(1-o)     da_i = dc_total·g·i(1-i)
//   da_f = dc_total·c_prev·f(1-f)   da_g = dc_total·i·(1-g²)
//   dc_prev = dc_total·f
#include "core/ops/rnn.h"

#include <cmath>

#include "core/autograd.h"

namespace qforge {

namespace {
inline float sigmoid_of(float v) { return 1.0f / (1.0f + std::exp(-v)); }
}  // namespace

Tensor lstm_cell(const Tensor& gates, const Tensor& c_prev) {
  QF_CHECK(gates.dim() == 2 && c_prev.dim() == 2 && gates.size(0) == c_prev.size(0) &&
               gates.size(1) == 4 * c_prev.size(1),
           "lstm_cell: expected gates (B,4H) and c_prev (B,H), got ", gates.shape(), " and ", c_prev.shape());
  const int64_t batch = c_prev.size(0), hidden = c_prev.size(1);
  Tensor out = Tensor::empty({batch, 2 * hidden});    // [h | c]
  Tensor activations = Tensor::empty(gates.shape());  // (B,4H): i, f, g, o after their nonlinearity
  Tensor tanh_c = Tensor::empty(c_prev.shape());      // (B,H)
  const float* a = gates.data();
  const float* cp = c_prev.data();
  float* y = out.data();
  float* act = activations.data();
  float* tc = tanh_c.data();
  for (int64_t b = 0; b < batch; ++b) {
    const float* ab = a + b * 4 * hidden;
    float* actb = act + b * 4 * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      float i = sigmoid_of(ab[j]), f = sigmoid_of(ab[hidden + j]);
      float g = std::tanh(ab[2 * hidden + j]), o = sigmoid_of(ab[3 * hidden + j]);
      float c = f * cp[b * hidden + j] + i * g;
      float t = std::tanh(c);
      actb[j] = i, actb[hidden + j] = f, actb[2 * hidden + j] = g, actb[3 * hidden + j] = o;
      tc[b * hidden + j] = t;
      y[b * 2 * hidden + j] = o * t;
      y[b * 2 * hidden + hidden + j] = c;
    }
  }
  if (!any_requires_grad({&gates, &c_prev})) return out;
  Tensor saved_c_prev = c_prev.detach();
  return record(out, "lstm_cell", {gates, c_prev}, [=](const Tensor& grad, const Node&) {
    Tensor d_gates = Tensor::empty({batch, 4 * hidden}), d_c_prev = Tensor::empty({batch, hidden});
    const float* g_out = grad.data();
    const float* act = activations.data();
    const float* tc = tanh_c.data();
    const float* cp = saved_c_prev.data();
    float* da = d_gates.data();
    float* dcp = d_c_prev.data();
    for (int64_t b = 0; b < batch; ++b) {
      const float* actb = act + b * 4 * hidden;
      float* dab = da + b * 4 * hidden;
      for (int64_t j = 0; j < hidden; ++j) {
        float i = actb[j], f = actb[hidden + j], g = actb[2 * hidden + j], o = actb[3 * hidden + j];
        float t = tc[b * hidden + j];
        float dh = g_out[b * 2 * hidden + j], dc = g_out[b * 2 * hidden + hidden + j];
        float dc_total = dc + dh * o * (1 - t * t);
        dab[j] = dc_total * g * i * (1 - i);
        dab[hidden + j] = dc_total * cp[b * hidden + j] * f * (1 - f);
        dab[2 * hidden + j] = dc_total * i * (1 - g * g);
        dab[3 * hidden + j] = dh * t * o * (1 - o);
        dcp[b * hidden + j] = dc_total * f;
      }
    }
    return std::vector<Tensor>{d_gates, d_c_prev};
  });
}

}  // namespace qforge
