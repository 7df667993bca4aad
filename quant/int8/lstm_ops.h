// Recurrent and dynamic integer ops.
//   dynamic_linear  PyTorch's quantize_dynamic Linear: int8 weights fixed at convert time;
//                   each call picks the input's scale and zero point from that call's
//                   min and max (ChooseQuantizationParams, reduce_range: levels 0..127),
//                   quantizes, accumulates in int32 and returns floats.
//   dynamic_lstm    PyTorch's dynamic LSTM: gates = dynlin(x_t, W_ih) + dynlin(h, W_hh);
//                   the input projection is one call over the whole sequence (one scale
//                   for every step), the hidden state is re-quantized at every step; the
//                   cell's pointwise math is float (core/ops/rnn.h's lstm_cell).
//   lstm            the static integer LSTM a QatLSTM (quant/qat_lstm.h) converts to —
//                   what PyTorch has no path to: uint8 input, int8 gate weights, int32
//                   accumulation; the gate pre-activations and the hidden state are
//                   quantized exactly where the simulation quantized them (gates_quant,
//                   hidden_quant); the cell's pointwise math and c stay float, as there.
// Sequences are batch first (N,T,F); an image (N,1,H,W) is read as N sequences of H rows.
#pragma once

#include <array>
#include <memory>

#include "quant/int8/integer_ops.h"

namespace qforge::quant::int8 {

// PyTorch's ChooseQuantizationParams (no sparsity preservation, no power-of-two scale).
struct DynamicParams {
  double scale;
  int32_t zero_point;
};
DynamicParams choose_dynamic_params(float min, float max, int32_t quant_min = 0, int32_t quant_max = 127);
// The input quantization of those parameters: uint8's full range, as PyTorch's quint8.
ActivationQuant dynamic_input(const DynamicParams& params);

// One dynamically quantized matrix product: y (M,N) = x (M,K) · Wᵀ + b, float in and out.
class DynamicLinear {
 public:
  DynamicLinear(Tensor weight, std::vector<float> weight_scale, std::vector<float> bias,
                bool has_relu = false);
  void run(float* y, const float* x, int64_t m, Backend backend) const;
  // The parameters the last run chose (for tests against PyTorch's x_scale/x_zero_point).
  DynamicParams choose(const float* x, int64_t count) const;
  // run's second half: the product on x (M,K) already quantized with `input`, the
  // parameters choose gave (dynamic_input).
  void run_quantized(float* y, const uint8_t* q, int64_t m, const ActivationQuant& input,
                     Backend backend) const;
  // For a caller that runs many products as the input's parameters change (the dynamic LSTM's
  // steps), on the fast backend: a stage laid out once (make_stage), refilled for each call's
  // input parameters in place (set_input: the multipliers and zero-point offsets
  // make_dequantization and run give, the same floats), and the product through it.
  FusedStage make_stage() const;
  void set_input(FusedStage& stage, const ActivationQuant& input) const;
  void run_fast(float* y, const uint8_t* q, int64_t m, const FusedStage& stage) const;
  const Tensor& weight() const { return weight_; }
  const std::vector<float>& weight_scale() const { return weight_scale_; }
  const std::vector<float>& bias() const { return bias_; }
  bool has_relu() const { return has_relu_; }

 private:
  Tensor weight_;  // int8 (N,K)
  std::vector<float> weight_scale_, bias_;
  bool has_relu_;
  std::unique_ptr<fast::LinearLayer> fast_;
};

class DynamicLinearOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "dynamic_linear";
  explicit DynamicLinearOp(DynamicLinear linear) : linear_(std::move(linear)) {}
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  int64_t weight_bytes() const override;
  const DynamicLinear& linear() const { return linear_; }

 private:
  DynamicLinear linear_;
};

struct DynamicLstmLayer {
  DynamicLinear input, hidden;  // W_ih (4H,in), W_hh (4H,H), gate order i,f,g,o
};
// One layer over a batch-first sequence: outputs (N,T,H); h, c (N,H) are the initial
// states on entry and the final ones on return.
void dynamic_lstm_layer(float* outputs, float* h, float* c, const float* x, int64_t batch, int64_t steps,
                        const DynamicLstmLayer& layer, Backend backend);

// A stacked dynamic LSTM from zero initial states; output: the last layer's final h (N,H).
class DynamicLstmOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "dynamic_lstm";
  explicit DynamicLstmOp(std::vector<DynamicLstmLayer> layers);
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  int64_t weight_bytes() const override;
  const std::vector<DynamicLstmLayer>& layers() const { return layers_; }

 private:
  std::vector<DynamicLstmLayer> layers_;
};

struct StaticLstmLayer {
  LayerQuantization input, hidden;  // W_ih on the layer input, W_hh on h; float outputs
  ActivationQuant gates, state;     // the simulation's gates_quant and hidden_quant
};

// The static integer LSTM from zero initial states; output: the last layer's final h,
// uint8 (N,H) with the last hidden_quant's parameters.
class StaticLstmOp : public IntegerOp {
 public:
  static constexpr const char* kKind = "lstm";
  explicit StaticLstmOp(std::vector<StaticLstmLayer> layers);
  std::string kind() const override { return kKind; }
  Value run(const std::vector<const Value*>& inputs, Backend backend) const override;
  ValueType infer(const std::vector<const ValueType*>& inputs) const override;
  nlohmann::json save(TensorMap& blobs, const std::string& prefix) const override;
  static std::unique_ptr<IntegerOp> load(OpReader& reader);
  int64_t weight_bytes() const override;

 private:
  struct Kernels {
    std::unique_ptr<fast::LinearLayer> input, hidden;
    OutputStage input_stage, hidden_stage;
    std::array<float, 256> sigmoid, tanh;  // over the gate grid's levels
  };
  // The fast backend's layer: outputs (N,T,H) from x (N,T,in); h (N,H) holds the final levels
  // on return, c (N,H) starts at zero.
  void run_layer_fast(uint8_t* outputs, uint8_t* h, float* c, const uint8_t* x, int64_t batch, int64_t steps,
                      std::size_t layer) const;
  std::vector<StaticLstmLayer> layers_;
  std::vector<Kernels> kernels_;
};

}  // namespace qforge::quant::int8
