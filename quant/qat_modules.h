// The modules prepare puts in a model (PyTorch's torch.ao.nn.intrinsic.qat): each is
// exactly one op of the integer runtime, simulated in float.
//   QatConv2d     Conv2d [+ BatchNorm2d, folded: Note [BN folding]] [+ ReLU]
//   QatLinear     Linear [+ ReLU]
//   QatAvgPool2d  AvgPool2d / AdaptiveAvgPool2d, re-rounded to its input's grid
// Each fake-quantizes its weights (weight_quant) and its output (output_quant); in eval mode
// the conv and linear layers run as deployed — folded weights, the bias on the int32 grid
// of the accumulator (Note [Bias quantization], quant/quant_params.h). A layer
// the config keeps in float has no weight_quant: it computes in float, and its output is
// still quantized so the next integer layer gets integers ("runs in float between
// dequantize and quantize"); the network's last layer, if float, keeps float outputs.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

#include "nn/module.h"
#include "quant/fake_quantize_module.h"
#include "quant/int8/integer_ops.h"
#include "quant/int8/requantize.h"
#include "quant/qconfig.h"

namespace qforge::nn {
class Conv2d;
class BatchNorm2d;
class Linear;
}  // namespace qforge::nn

namespace qforge::quant {

class QatConv2d : public nn::Module {
 public:
  // qconfig.is_float: float weights (no weight_quant), output quantized by qconfig.activation.
  QatConv2d(std::shared_ptr<nn::Conv2d> conv, std::shared_ptr<nn::BatchNorm2d> bn, bool has_relu,
            const QConfig& qconfig);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override;
  void freeze_bn(bool frozen) { is_bn_frozen_ = frozen; }
  // The weights and bias of the equivalent plain conv (BN folded with running statistics).
  std::pair<Tensor, Tensor> folded_weight_and_bias() const;
  // The folded weight and bias (Note [Finiteness gate]): a BN with a huge running mean or a
  // zero variance folds into infinities even when every parameter is finite.
  NamedTensors derived_values() const override;

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;  // may be null
  bool has_relu;
  std::shared_ptr<FakeQuantize> weight_quant;  // null: the layer is kept in float
  std::shared_ptr<FakeQuantize> output_quant;  // null: float output (the network's last layer)
  // The quantizer that produced the input (the layer before's: not a child), whose scale the
  // bias is quantized with (Note [Bias quantization]); null when the input is float.
  std::shared_ptr<FakeQuantize> input_quant;
  // Called with the layer's input at the start of every forward while set: what post-training
  // methods that look at a layer's inputs (bias correction, AdaRound) read (with_input_probe).
  std::function<void(const Tensor&)> input_probe;

 private:
  bool is_bn_frozen_ = false;
};

class QatLinear : public nn::Module {
 public:
  QatLinear(std::shared_ptr<nn::Linear> linear, bool has_relu, const QConfig& qconfig);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override;

  std::shared_ptr<nn::Linear> linear;
  bool has_relu;
  std::shared_ptr<FakeQuantize> weight_quant;      // null: kept in float
  std::shared_ptr<FakeQuantize> output_quant;      // may be null
  std::shared_ptr<FakeQuantize> input_quant;       // as QatConv2d's
  std::function<void(const Tensor&)> input_probe;  // as QatConv2d's
};

// Runs `run` with `probe` installed in `slot` (a layer's input_probe) and removes it after,
// also when `run` throws: how the post-training methods read a layer's inputs.
void with_input_probe(std::function<void(const Tensor&)>& slot, std::function<void(const Tensor&)> probe,
                      const std::function<void()>& run);

// An average pool over quantized values, on its input's grid: the integer avg_pool2d keeps
// its input's scale and zero point and must round the mean, so the simulation pools the
// input's levels exactly as the integer kernel does (Note [Pooling on the grid],
// qat_modules.cpp), with the parameters of `source`, the quantizer that produced the input
// (not a child: it belongs to the layer before). The gradient is the float pool's.
class QatAvgPool2d : public nn::Module {
 public:
  QatAvgPool2d(nn::ModulePtr pool, std::shared_ptr<FakeQuantize> source);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "Qat" + pool->type_name(); }

  nn::ModulePtr pool;  // AvgPool2d or AdaptiveAvgPool2d
  std::shared_ptr<FakeQuantize> source;
};

// A conv, linear or LSTM product as the integer runtime computes it (Note [The simulation
// runs the deployed arithmetic], qat_modules.cpp): the layer's deployed quantization, and its
// output stage.
struct Deployed {
  int8::LayerQuantization layer;
  int8::OutputStage stage;
  Tensor codes;       // layer.weight's codes as float, what run_deployed convolves with
  double widest = 0;  // max_j Σ|w_j| over the output channels: the accumulators' bound
};

// `module`'s product as deployed, or nullopt when it must run the float formula: in
// training, with gradients wanted for any of `inputs`, an uncalibrated or observing
// quantizer, or what convert refuses. round_bias: the bias on the accumulator's grid (conv
// and linear) or float (the LSTM's gate products), as convert deploys it.
std::optional<Deployed> deployed_arithmetic(const nn::Module& module, const FakeQuantize* weight_quant,
                                            const FakeQuantize* input_quant, FakeQuantize* output_quant,
                                            const Tensor& weight, const Tensor& bias, bool has_relu,
                                            std::initializer_list<const Tensor*> inputs,
                                            bool round_bias = true);

// The deployed product on `input` (fake-quantized values on the input quantizer's grid): `op`
// is the float conv or linear of the levels with the codes; nullopt when an accumulator could
// leave float's exact integers.
std::optional<Tensor> run_deployed(const Deployed& deployed, const Tensor& input,
                                   const std::function<Tensor(const Tensor&, const Tensor&)>& op);

// The prepared model: input quantization, then the (rewritten) float model.
class QatModel : public nn::Module {
 public:
  QatModel(nn::ModulePtr model, const QConfig& input_qconfig);
  Tensor forward(const Tensor& input) override { return model->forward(input_quant->forward(input)); }
  std::string type_name() const override { return "QatModel"; }

  std::shared_ptr<FakeQuantize> input_quant;
  nn::ModulePtr model;
};

}  // namespace qforge::quant
