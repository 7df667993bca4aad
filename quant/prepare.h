// prepare: turn a float model into its quantization-aware form (PyTorch's fuse_modules +
// prepare_qat). Fusion: Conv-BN-ReLU, Conv-BN, Conv-ReLU and Linear-ReLU become one
// module; fused-away layers become Identity so every other layer keeps its name.
// FakeQuantize is inserted exactly where the integer runtime will quantize: the network
// input, each fused block's weights and output, each residual block's output (after
// its add and ReLU), and inside an LSTM (quant/qat_lstm.h). Pooling, flatten and dropout
// pass quantized values through. The network output is the last fused layer's output
// quantizer; the override name "output" gives it its own spec (e.g. 8 bits in a 4-bit
// network: 16 logit levels tie the arg max) or leaves it float.
//
// BN folding during training (Note [BN folding]; PyTorch's ConvBn2d, Krishnamoorthi 2018
// §3.2): with σ = √(running_var + ε) and f = γ/σ, the conv runs with fake-quantized
// weights fq(W·f), its output is divided by f (and the conv bias added back), then BN
// runs — with batch statistics while they train, with running statistics once frozen.
// Dividing by the same f keeps BN's normalization of the true conv output, so the
// statistics stay correct at low bit widths; in evaluation the whole thing equals a
// conv with folded weights W·γ/σ and bias β + (b − μ)·γ/σ, which is what convert builds.
#pragma once

#include <string>

#include "nn/module.h"
#include "quant/fake_quantize_module.h"
#include "quant/qconfig.h"

namespace qforge::nn {
class Conv2d;
class BatchNorm2d;
class Linear;
}  // namespace qforge::nn

namespace qforge::quant {

// Conv2d [+ BatchNorm2d] [+ ReLU] with weight and output fake quantization.
class QatConv2d : public nn::Module {
 public:
  QatConv2d(std::shared_ptr<nn::Conv2d> conv, std::shared_ptr<nn::BatchNorm2d> bn, bool has_relu,
            const QConfig& qconfig);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override;
  void freeze_bn(bool frozen) { is_bn_frozen_ = frozen; }
  // The weights and bias of the equivalent plain conv (BN folded with running statistics).
  std::pair<Tensor, Tensor> folded_weight_and_bias() const;

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;  // may be null
  bool has_relu;
  std::shared_ptr<FakeQuantize> weight_quant, output_quant;  // output_quant may be null

 private:
  bool is_bn_frozen_ = false;
};

// Linear [+ ReLU] with weight and output fake quantization.
class QatLinear : public nn::Module {
 public:
  QatLinear(std::shared_ptr<nn::Linear> linear, bool has_relu, const QConfig& qconfig);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return has_relu ? "QatLinearReLU" : "QatLinear"; }

  std::shared_ptr<nn::Linear> linear;
  bool has_relu;
  std::shared_ptr<FakeQuantize> weight_quant, output_quant;  // output_quant may be null
};

// The prepared model: input quantization, then the (rewritten) float model.
class QuantizedModel : public nn::Module {
 public:
  QuantizedModel(nn::ModulePtr model, const QConfig& input_qconfig);
  Tensor forward(const Tensor& input) override { return model->forward(input_quant->forward(input)); }
  std::string type_name() const override { return "QuantizedModel"; }

  std::shared_ptr<FakeQuantize> input_quant;
  nn::ModulePtr model;
};

// Rewrites `model` in place and wraps it; the float weights are shared, not copied.
std::shared_ptr<QuantizedModel> prepare_qat(const nn::ModulePtr& model, const QuantConfig& config);

// Switches over every FakeQuantize / fused conv of a prepared model.
void set_observers(nn::Module& model, bool enabled, bool even_in_eval = false);
void set_fake_quant(nn::Module& model, bool enabled);
void freeze_batch_norm(nn::Module& model, bool frozen);
int64_t count_fake_quantizers(nn::Module& model);

}  // namespace qforge::quant
