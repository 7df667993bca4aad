// LSTM (PyTorch's nn.LSTM with batch_first=True): multi-layer, gate order i,f,g,o,
// parameters weight_ih_l{k} (4H,in), weight_hh_l{k} (4H,H), bias_ih_l{k}, bias_hh_l{k},
// all initialized U(-1/√H, 1/√H). Each layer projects the inputs of all time steps with
// one GEMM, then runs the recurrence as one lstm_layer op (hand-written backpropagation
// through time; core/ops/rnn.cpp).
#pragma once

#include "core/random.h"
#include "nn/module.h"

namespace qforge::nn {

struct LstmOutput {
  Tensor outputs;  // (B,T,H) of the last layer
  Tensor h, c;     // (L,B,H) final states
};

// What a sequence classifier needs from its recurrent layer: the float LSTM below, or
// quantization's QatLSTM (quant/qat_lstm.h), which wraps one.
class RecurrentLayer : public Module {
 public:
  // x (B,T,in); optional initial states (L,B,H), zeros when undefined.
  virtual LstmOutput forward_sequence(const Tensor& x, const Tensor& h0 = Tensor(),
                                      const Tensor& c0 = Tensor()) = 0;
  Tensor forward(const Tensor& input) override { return forward_sequence(input).outputs; }
  virtual int64_t input_size() const = 0;
  virtual int64_t hidden_size() const = 0;
  virtual int64_t num_layers() const = 0;
};

class LSTM : public RecurrentLayer {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, int64_t num_layers, Generator& generator);
  LstmOutput forward_sequence(const Tensor& x, const Tensor& h0 = Tensor(),
                              const Tensor& c0 = Tensor()) override;
  std::string type_name() const override { return "LSTM"; }
  int64_t input_size() const override { return input_size_; }
  int64_t hidden_size() const override { return hidden_size_; }
  int64_t num_layers() const override { return num_layers_; }
  // The layer's initial states from optional (L,B,H) tensors: zeros when undefined.
  std::pair<Tensor, Tensor> initial_state(const Tensor& h0, const Tensor& c0, int64_t layer,
                                          int64_t batch) const;

  std::vector<Tensor> weight_ih, weight_hh, bias_ih, bias_hh;  // one per layer

 private:
  int64_t input_size_, hidden_size_, num_layers_;
};

// The zoo's row-by-row classifier: (B,1,28,28) -> 28 steps of 28 features -> LSTM ->
// the last step's output -> Linear.
class LstmClassifier : public Module {
 public:
  LstmClassifier(int64_t input_size, int64_t hidden_size, int64_t num_layers, int64_t num_classes,
                 Generator& generator);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "LstmClassifier"; }

  std::shared_ptr<RecurrentLayer> lstm;  // replaced by QatLSTM when prepared for QAT
  std::shared_ptr<Module> fc;

 protected:
  void child_replaced(const std::string& name, const std::shared_ptr<Module>& module) override;
};

}  // namespace qforge::nn
