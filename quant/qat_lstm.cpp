#include "quant/qat_lstm.h"

#include <optional>

#include "core/autograd.h"
#include "core/ops.h"
#include "quant/qat_modules.h"

namespace qforge::quant {

QatLSTM::QatLSTM(std::shared_ptr<nn::LSTM> lstm_, const QConfig& qconfig) : lstm(std::move(lstm_)) {
  register_module("lstm", lstm);
  const int64_t gate_rows = 4 * lstm->hidden_size();
  const int64_t weight_channels = qconfig.weight.scheme.axis >= 0 ? gate_rows : 1;
  for (int64_t layer = 0; layer < lstm->num_layers(); ++layer) {
    const std::string suffix = "_l" + std::to_string(layer);
    weight_ih_quant.push_back(register_module(
        "weight_ih_quant" + suffix, std::make_shared<FakeQuantize>(qconfig.weight, weight_channels)));
    weight_hh_quant.push_back(register_module(
        "weight_hh_quant" + suffix, std::make_shared<FakeQuantize>(qconfig.weight, weight_channels)));
    gates_quant.push_back(
        register_module("gates_quant" + suffix, std::make_shared<FakeQuantize>(qconfig.activation, 1)));
    hidden_quant.push_back(
        register_module("hidden_quant" + suffix, std::make_shared<FakeQuantize>(qconfig.activation, 1)));
  }
}

nn::LstmOutput QatLSTM::forward_sequence(const Tensor& x, const Tensor& h0, const Tensor& c0) {
  QF_CHECK(x.dim() == 3 && x.size(2) == input_size(), "QatLSTM: expected input (B,T,", input_size(),
           "), got ", x.shape());
  const int64_t batch = x.size(0), steps = x.size(1), hidden = hidden_size();
  Tensor layer_input = x;  // (B,T,in)
  std::vector<Tensor> final_h, final_c;
  for (int64_t layer = 0; layer < num_layers(); ++layer) {
    const Tensor w_ih = weight_ih_quant[layer]->forward(lstm->weight_ih[layer]);  // (4H,in)
    const Tensor w_hh = weight_hh_quant[layer]->forward(lstm->weight_hh[layer]);  // (4H,H)
    // Evaluated, the two gate products as the integer LSTM computes them (float biases, as
    // convert deploys them) when the quantizers they read hold still for the whole sequence.
    FakeQuantize* reads = layer == 0 ? input_quant.get() : hidden_quant[layer - 1].get();
    std::optional<Deployed> input_product, hidden_product;
    if (reads && reads->is_settled() && gates_quant[layer]->is_settled() &&
        hidden_quant[layer]->is_settled()) {
      input_product = deployed_arithmetic(*this, weight_ih_quant[layer].get(), reads, nullptr,
                                          lstm->weight_ih[layer], lstm->bias_ih[layer], false,
                                          {&x, &lstm->weight_ih[layer], &lstm->bias_ih[layer]}, false);
      hidden_product = deployed_arithmetic(*this, weight_hh_quant[layer].get(), hidden_quant[layer].get(),
                                           nullptr, lstm->weight_hh[layer], lstm->bias_hh[layer], false,
                                           {&h0, &lstm->weight_hh[layer], &lstm->bias_hh[layer]}, false);
    }
    auto product = [](const std::optional<Deployed>& deployed, const Tensor& input, const Tensor& weight,
                      const Tensor& bias) {
      if (deployed)
        if (auto exact = run_deployed(*deployed, input, [](const Tensor& levels, const Tensor& codes) {
              return linear(levels, codes);
            }))
          return *exact;
      return linear(input, weight, bias);
    };
    auto [h, c] = lstm->initial_state(h0, c0, layer, batch);
    const int64_t features = layer_input.size(2), gate_rows = 4 * hidden;
    // The input products do not depend on the recurrence: in float, all steps' in one GEMM
    // (and one in backward), each step then a slice of it. The deployed arithmetic keeps
    // one product per step.
    Tensor projected;  // (B,T,4H)
    if (!input_product)
      projected = reshape(linear(reshape(layer_input, {batch * steps, features}), w_ih, lstm->bias_ih[layer]),
                          {batch, steps, gate_rows});
    std::vector<Tensor> outputs;
    for (int64_t t = 0; t < steps; ++t) {
      const Tensor input_gates =
          input_product ? product(input_product, reshape(slice(layer_input, 1, t, t + 1), {batch, features}),
                                  w_ih, lstm->bias_ih[layer])
                        : reshape(slice(projected, 1, t, t + 1), {batch, gate_rows});
      Tensor gates = add(input_gates, product(hidden_product, h, w_hh, lstm->bias_hh[layer]));  // (B,4H)
      Tensor hc = lstm_cell(gates_quant[layer]->forward(gates), c);                             // (B,2H)
      h = hidden_quant[layer]->forward(slice(hc, 1, 0, hidden));
      c = slice(hc, 1, hidden, 2 * hidden);
      outputs.push_back(reshape(h, {batch, 1, hidden}));
    }
    layer_input = cat(outputs, 1);  // (B,T,H)
    final_h.push_back(reshape(h, {1, batch, hidden}));
    final_c.push_back(reshape(c, {1, batch, hidden}));
  }
  return {layer_input, cat(final_h, 0), cat(final_c, 0)};
}

}  // namespace qforge::quant
