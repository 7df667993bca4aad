// QatLSTM: an LSTM trained quantization-aware — what PyTorch's eager and FX modes and
// TF-MOT cannot do (pytorch/pytorch #42594, #71028; tensorflow/tensorflow #61329).
// Per layer it fake-quantizes the weights W_ih, W_hh (per channel over the 4H gate rows,
// by the weight QConfig) and, at every step, the gate pre-activations and the hidden state
// (by the activation QConfig); the layer input is the model's quantized input or the
// previous layer's quantized hidden state. Steps run one at a time (the float LSTM's fused
// lstm_layer cannot place quantizers inside the recurrence); the cell's pointwise math is
// still the fused lstm_cell.
#pragma once

#include "nn/lstm.h"
#include "quant/fake_quantize_module.h"
#include "quant/qconfig.h"

namespace qforge::quant {

class QatLSTM : public nn::RecurrentLayer {
 public:
  QatLSTM(std::shared_ptr<nn::LSTM> lstm, const QConfig& qconfig);
  nn::LstmOutput forward_sequence(const Tensor& x, const Tensor& h0 = Tensor(),
                                  const Tensor& c0 = Tensor()) override;
  std::string type_name() const override { return "QatLSTM"; }
  int64_t input_size() const override { return lstm->input_size(); }
  int64_t hidden_size() const override { return lstm->hidden_size(); }
  int64_t num_layers() const override { return lstm->num_layers(); }

  std::shared_ptr<nn::LSTM> lstm;
  std::vector<std::shared_ptr<FakeQuantize>> weight_ih_quant, weight_hh_quant, gates_quant, hidden_quant;
  // The quantizer that produced the input (the layer before's: not a child); null when the
  // input is float. Evaluated, the gate products then run as deployed (Note [The simulation
  // runs the deployed arithmetic], qat_modules.cpp).
  std::shared_ptr<FakeQuantize> input_quant;
};

}  // namespace qforge::quant
