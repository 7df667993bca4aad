#include "quant/qat_modules.h"

#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "quant/bn_folding.h"
#include "quant/fake_quantize.h"

namespace qforge::quant {

namespace {
std::shared_ptr<FakeQuantize> weight_quantizer(const QConfig& qconfig, int64_t out_channels) {
  if (qconfig.is_float) return nullptr;
  return std::make_shared<FakeQuantize>(qconfig.weight, qconfig.weight.scheme.axis >= 0 ? out_channels : 1);
}
}  // namespace

QatConv2d::QatConv2d(std::shared_ptr<nn::Conv2d> conv_, std::shared_ptr<nn::BatchNorm2d> bn_, bool has_relu_,
                     const QConfig& qconfig)
    : conv(std::move(conv_)), bn(std::move(bn_)), has_relu(has_relu_) {
  register_module("conv", conv);
  if (bn) register_module("bn", bn);
  weight_quant = weight_quantizer(qconfig, conv->out_channels);
  if (weight_quant) register_module("weight_quant", weight_quant);
  output_quant = register_module("output_quant", std::make_shared<FakeQuantize>(qconfig.activation, 1));
}

std::string QatConv2d::type_name() const {
  return std::string(weight_quant ? "Qat" : "Float") + "Conv" + (bn ? "Bn" : "") + (has_relu ? "ReLU" : "") +
         "2d";
}

Tensor QatConv2d::forward(const Tensor& input) {
  auto quantized = [&](const Tensor& w) { return weight_quant ? weight_quant->forward(w) : w; };
  Tensor y;
  if (bn) {
    const Tensor factor = bn_folding_factor(*bn);
    y = conv_bn_folded_forward(input, quantized(fold_weight(*conv, factor)), factor, *conv, *bn,
                               is_training() && !is_bn_frozen_);
  } else {
    y = conv2d(input, quantized(conv->weight), conv->bias, conv->options);
  }
  if (has_relu) y = relu(y);
  return output_quant ? output_quant->forward(y) : y;
}

std::pair<Tensor, Tensor> QatConv2d::folded_weight_and_bias() const {
  return quant::folded_weight_and_bias(*conv, bn.get());
}

nn::Module::NamedTensors QatConv2d::derived_values() const {
  if (!bn) return {};
  auto [weight, bias] = folded_weight_and_bias();
  return {{"folded_weight", weight}, {"folded_bias", bias}};
}

QatLinear::QatLinear(std::shared_ptr<nn::Linear> linear_, bool has_relu_, const QConfig& qconfig)
    : linear(std::move(linear_)), has_relu(has_relu_) {
  register_module("linear", linear);
  weight_quant = weight_quantizer(qconfig, linear->out_features);
  if (weight_quant) register_module("weight_quant", weight_quant);
  output_quant = register_module("output_quant", std::make_shared<FakeQuantize>(qconfig.activation, 1));
}

std::string QatLinear::type_name() const {
  return std::string(weight_quant ? "Qat" : "Float") + "Linear" + (has_relu ? "ReLU" : "");
}

Tensor QatLinear::forward(const Tensor& input) {
  Tensor y = qforge::linear(input, weight_quant ? weight_quant->forward(linear->weight) : linear->weight,
                            linear->bias);
  if (has_relu) y = relu(y);
  return output_quant ? output_quant->forward(y) : y;
}

QatAvgPool2d::QatAvgPool2d(nn::ModulePtr pool_, std::shared_ptr<FakeQuantize> source_)
    : pool(std::move(pool_)), source(std::move(source_)) {
  register_module("pool", pool);
}

Tensor QatAvgPool2d::forward(const Tensor& input) {
  Tensor y = pool->forward(input);
  if (!source->is_fake_quantizing()) return y;  // calibration: the input was float too
  return fake_quantize(y, source->qparams(), source->spec().scheme.range());
}

QatModel::QatModel(nn::ModulePtr model_, const QConfig& input_qconfig) : model(std::move(model_)) {
  input_quant = register_module("input_quant", std::make_shared<FakeQuantize>(input_qconfig.activation, 1));
  register_module("model", model);
}

}  // namespace qforge::quant
