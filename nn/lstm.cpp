#include "nn/lstm.h"

#include <cmath>

#include "core/ops.h"
#include "nn/linear.h"

namespace qforge::nn {

LSTM::LSTM(int64_t input_size, int64_t hidden_size, int64_t num_layers, Generator& generator)
    : input_size_(input_size), hidden_size_(hidden_size), num_layers_(num_layers) {
  QF_CHECK(input_size >= 1 && hidden_size >= 1 && num_layers >= 1, "LSTM: sizes must be >= 1");
  const float bound = 1.0f / std::sqrt(static_cast<float>(hidden_size));
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    const int64_t in = layer == 0 ? input_size : hidden_size;
    const std::string suffix = "_l" + std::to_string(layer);
    weight_ih.push_back(register_parameter("weight_ih" + suffix,
                                           Tensor::uniform({4 * hidden_size, in}, generator, -bound, bound)));
    weight_hh.push_back(register_parameter(
        "weight_hh" + suffix, Tensor::uniform({4 * hidden_size, hidden_size}, generator, -bound, bound)));
    bias_ih.push_back(
        register_parameter("bias_ih" + suffix, Tensor::uniform({4 * hidden_size}, generator, -bound, bound)));
    bias_hh.push_back(
        register_parameter("bias_hh" + suffix, Tensor::uniform({4 * hidden_size}, generator, -bound, bound)));
  }
}

std::pair<Tensor, Tensor> LSTM::initial_state(const Tensor& h0, const Tensor& c0, int64_t layer,
                                              int64_t batch) const {
  const Shape state_shape{num_layers_, batch, hidden_size_};
  QF_CHECK(!h0.defined() || h0.shape() == state_shape, "LSTM: expected h0 ", state_shape, ", got ",
           h0.shape());
  QF_CHECK(!c0.defined() || c0.shape() == state_shape, "LSTM: expected c0 ", state_shape, ", got ",
           c0.shape());
  auto pick = [&](const Tensor& state) {
    return state.defined() ? reshape(slice(state, 0, layer, layer + 1), {batch, hidden_size_})
                           : Tensor::zeros({batch, hidden_size_});
  };
  return {pick(h0), pick(c0)};
}

LstmOutput LSTM::forward_sequence(const Tensor& x, const Tensor& h0, const Tensor& c0) {
  QF_CHECK(x.dim() == 3 && x.size(2) == input_size_, "LSTM: expected input (B,T,", input_size_, "), got ",
           x.shape());
  const int64_t batch = x.size(0), steps = x.size(1), hidden = hidden_size_;
  Tensor layer_input = x;  // (B,T,in)
  std::vector<Tensor> final_h, final_c;
  for (int64_t layer = 0; layer < num_layers_; ++layer) {
    if (!grad_mode_enabled()) {  // Note [LSTM inference] (core/ops/rnn.cpp)
      auto [h, c] = initial_state(h0, c0, layer, batch);
      LstmLayerStates states = lstm_layer_inference(layer_input, weight_ih[layer], weight_hh[layer],
                                                    bias_ih[layer], bias_hh[layer], h, c);
      layer_input = states.h;  // (B,T,H)
      final_h.push_back(reshape(slice(states.h, 1, steps - 1, steps), {1, batch, hidden}));
      final_c.push_back(reshape(states.c, {1, batch, hidden}));
      continue;
    }
    // All steps' input projections in one GEMM: (B,T,4H).
    Tensor projected = linear(layer_input, weight_ih[layer], bias_ih[layer]);
    auto [h, c] = initial_state(h0, c0, layer, batch);
    Tensor states = lstm_layer(projected, weight_hh[layer], bias_hh[layer], h, c);  // (B,T,2H): [h_t | c_t]
    layer_input = slice(states, 2, 0, hidden);                                      // (B,T,H)
    Tensor last = reshape(slice(states, 1, steps - 1, steps), {batch, 2 * hidden});
    final_h.push_back(reshape(slice(last, 1, 0, hidden), {1, batch, hidden}));
    final_c.push_back(reshape(slice(last, 1, hidden, 2 * hidden), {1, batch, hidden}));
  }
  return {layer_input, cat(final_h, 0), cat(final_c, 0)};
}

LstmClassifier::LstmClassifier(int64_t input_size, int64_t hidden_size, int64_t num_layers,
                               int64_t num_classes, Generator& generator) {
  lstm = register_module("lstm", std::make_shared<LSTM>(input_size, hidden_size, num_layers, generator));
  fc = register_module("fc", std::make_shared<Linear>(hidden_size, num_classes, true, generator));
}

Tensor LstmClassifier::forward(const Tensor& input) {
  const int64_t features = lstm->input_size();
  QF_CHECK(input.dim() >= 2 && input.numel() % (input.size(0) * features) == 0,
           "LstmClassifier: cannot read input ", input.shape(), " as rows of ", features, " features");
  const int64_t batch = input.size(0);
  Tensor sequence = reshape(input, {batch, -1, features});  // (B,T,in): one image row per step
  LstmOutput out = lstm->forward_sequence(sequence);
  return fc->forward(reshape(slice(out.h, 0, -1, lstm->num_layers()), {batch, lstm->hidden_size()}));
}

void LstmClassifier::child_replaced(const std::string& name, const std::shared_ptr<Module>& module) {
  if (name == "fc") fc = module;
  if (name == "lstm") {
    lstm = std::dynamic_pointer_cast<RecurrentLayer>(module);
    QF_CHECK(lstm, "LstmClassifier: child \"lstm\" must be a recurrent layer, got ", module->type_name());
  }
}

}  // namespace qforge::nn
