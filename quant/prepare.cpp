#include "quant/prepare.h"

#include "quant/qat_lstm.h"

#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/lstm.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"

namespace qforge::quant {

// ---- fused modules -----------------------------------------------------------------

QatConv2d::QatConv2d(std::shared_ptr<nn::Conv2d> conv_, std::shared_ptr<nn::BatchNorm2d> bn_, bool has_relu_,
                     const QConfig& qconfig)
    : conv(std::move(conv_)), bn(std::move(bn_)), has_relu(has_relu_) {
  register_module("conv", conv);
  if (bn) register_module("bn", bn);
  const int64_t weight_channels = qconfig.weight.scheme.axis >= 0 ? conv->out_channels : 1;
  weight_quant =
      register_module("weight_quant", std::make_shared<FakeQuantize>(qconfig.weight, weight_channels));
  output_quant = register_module("output_quant", std::make_shared<FakeQuantize>(qconfig.activation, 1));
}

std::string QatConv2d::type_name() const {
  return std::string("QatConv") + (bn ? "Bn" : "") + (has_relu ? "ReLU" : "") + "2d";
}

Tensor QatConv2d::forward(const Tensor& input) {
  Tensor y;
  if (bn) {
    const int64_t channels = conv->out_channels;
    // f = γ/σ with σ from the running variance (a buffer: no gradient through it).
    Tensor running_std = sqrt(add(bn->running_var.detach(), bn->eps));
    Tensor factor = div(bn->weight, running_std);  // (C)
    Tensor weight = weight_quant->forward(mul(conv->weight, reshape(factor, {channels, 1, 1, 1})));
    // conv output / f (+ conv bias), as one per-channel affine pass.
    y = channel_affine(conv2d(input, weight, Tensor(), conv->options), pow(factor, -1.0f), conv->bias);
    y = batch_norm(y, bn->running_mean, bn->running_var, bn->weight, bn->bias,
                   is_training() && !is_bn_frozen_, bn->momentum, bn->eps);
  } else {
    y = conv2d(input, weight_quant->forward(conv->weight), conv->bias, conv->options);
  }
  if (has_relu) y = relu(y);
  return output_quant ? output_quant->forward(y) : y;
}

std::pair<Tensor, Tensor> QatConv2d::folded_weight_and_bias() const {
  NoGradGuard no_grad;
  if (!bn)
    return {conv->weight.detach(),
            conv->bias.defined() ? conv->bias.detach() : Tensor::zeros({conv->out_channels})};
  const int64_t channels = conv->out_channels;
  Tensor factor = div(bn->weight, sqrt(add(bn->running_var, bn->eps)));
  Tensor weight = mul(conv->weight, reshape(factor, {channels, 1, 1, 1}));
  Tensor bias = conv->bias.defined() ? conv->bias : Tensor::zeros({channels});
  return {weight, add(bn->bias, mul(sub(bias, bn->running_mean), factor))};
}

QatLinear::QatLinear(std::shared_ptr<nn::Linear> linear_, bool has_relu_, const QConfig& qconfig)
    : linear(std::move(linear_)), has_relu(has_relu_) {
  register_module("linear", linear);
  const int64_t weight_channels = qconfig.weight.scheme.axis >= 0 ? linear->out_features : 1;
  weight_quant =
      register_module("weight_quant", std::make_shared<FakeQuantize>(qconfig.weight, weight_channels));
  output_quant = register_module("output_quant", std::make_shared<FakeQuantize>(qconfig.activation, 1));
}

Tensor QatLinear::forward(const Tensor& input) {
  Tensor y = qforge::linear(input, weight_quant->forward(linear->weight), linear->bias);
  if (has_relu) y = relu(y);
  return output_quant ? output_quant->forward(y) : y;
}

QuantizedModel::QuantizedModel(nn::ModulePtr model_, const QConfig& input_qconfig)
    : model(std::move(model_)) {
  input_quant = register_module("input_quant", std::make_shared<FakeQuantize>(input_qconfig.activation, 1));
  register_module("model", model);
}

// ---- prepare -----------------------------------------------------------------------

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

template <typename T>
std::shared_ptr<T> as(const nn::ModulePtr& module) {
  return std::dynamic_pointer_cast<T>(module);
}

// Fuses runs inside one module's children; recurses into everything else.
void rewrite(nn::Module& parent, const std::string& prefix, const QuantConfig& config) {
  auto& children = parent.children();
  for (std::size_t i = 0; i < children.size(); ++i) {
    const auto& [name, child] = children[i];
    const std::string path = join(prefix, name);
    auto next = [&](std::size_t k) { return i + k < children.size() ? children[i + k].second : nullptr; };
    if (auto conv = as<nn::Conv2d>(child)) {
      const QConfig q = config.for_module(path, "Conv2d");
      if (q.is_float) continue;
      auto bn = as<nn::BatchNorm2d>(next(1));
      const bool has_relu = as<nn::ReLU>(next(bn ? 2 : 1)) != nullptr;
      parent.replace_child(i, std::make_shared<QatConv2d>(conv, bn, has_relu, q));
      for (std::size_t k = 1; k <= (bn ? 1u : 0u) + (has_relu ? 1u : 0u); ++k)
        parent.replace_child(i + k, std::make_shared<nn::Identity>());
      continue;
    }
    if (auto fc = as<nn::Linear>(child)) {
      const QConfig q = config.for_module(path, "Linear");
      if (q.is_float) continue;
      const bool has_relu = as<nn::ReLU>(next(1)) != nullptr;
      parent.replace_child(i, std::make_shared<QatLinear>(fc, has_relu, q));
      if (has_relu) parent.replace_child(i + 1, std::make_shared<nn::Identity>());
      continue;
    }
    if (auto lstm = as<nn::LSTM>(child)) {
      const QConfig q = config.for_module(path, "LSTM");
      if (q.is_float) continue;
      parent.replace_child(i, std::make_shared<QatLSTM>(lstm, q));
      continue;
    }
    rewrite(*child, path, config);
    // A residual block's output is quantized after its add and ReLU (BasicBlock::relu).
    if (auto block = as<nn::BasicBlock>(child)) {
      const QConfig q = config.for_module(path, "BasicBlock");
      if (q.is_float) continue;
      auto& block_children = block->children();
      for (std::size_t k = 0; k < block_children.size(); ++k)
        if (block_children[k].first == "relu") {
          auto quantized_relu = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
              std::make_shared<nn::ReLU>(), std::make_shared<FakeQuantize>(q.activation, 1)});
          block->replace_child(k, quantized_relu);
        }
    }
  }
}

// Gives a fused layer another output quantizer, or none (`float`).
void replace_output_quantizer(nn::Module& layer, std::shared_ptr<FakeQuantize>& member, const QConfig& q) {
  member = q.is_float ? nullptr : std::make_shared<FakeQuantize>(q.activation, 1);
  auto& children = layer.children();
  for (std::size_t k = 0; k < children.size(); ++k)
    if (children[k].first == "output_quant")
      layer.replace_child(k, member ? nn::ModulePtr(member) : std::make_shared<nn::Identity>());
}

template <typename T, typename F>
void for_each(nn::Module& model, F f) {
  for (auto& [name, module] : model.named_modules())
    if (auto* typed = dynamic_cast<T*>(module)) f(*typed);
}

}  // namespace

std::shared_ptr<QuantizedModel> prepare_qat(const nn::ModulePtr& model, const QuantConfig& config) {
  QF_CHECK(!as<QuantizedModel>(model), "prepare: the model is already prepared");
  rewrite(*model, "", config);
  // The network output's quantizer (override name "output", type "Output") is the output
  // quantizer of the last fused layer: its requantization produces the network's result.
  if (config.has_override("output", "Output")) {
    const QConfig q = config.for_module("output", "Output");
    nn::Module* last = nullptr;
    std::shared_ptr<FakeQuantize>* last_output = nullptr;
    for (auto& [name, module] : model->named_modules()) {  // registration order = forward order
      if (auto* conv = dynamic_cast<QatConv2d*>(module))
        last = conv, last_output = &conv->output_quant;
      else if (auto* fc = dynamic_cast<QatLinear*>(module))
        last = fc, last_output = &fc->output_quant;
    }
    QF_CHECK(
        last,
        "quant.overrides: \"output\" names the last quantized conv or linear layer; this model has none");
    replace_output_quantizer(*last, *last_output, q);
  }
  // The network input's quantizer answers to the override name "input" (type "Input").
  auto prepared = std::make_shared<QuantizedModel>(model, config.for_module("input", "Input"));
  prepared->train(model->is_training());
  return prepared;
}

void set_observers(nn::Module& model, bool enabled, bool even_in_eval) {
  for_each<FakeQuantize>(model, [&](FakeQuantize& q) { q.enable_observer(enabled, even_in_eval); });
}

void set_fake_quant(nn::Module& model, bool enabled) {
  for_each<FakeQuantize>(model, [&](FakeQuantize& q) { q.enable_fake_quant(enabled); });
}

void freeze_batch_norm(nn::Module& model, bool frozen) {
  for_each<QatConv2d>(model, [&](QatConv2d& c) { c.freeze_bn(frozen); });
}

int64_t count_fake_quantizers(nn::Module& model) {
  int64_t count = 0;
  for_each<FakeQuantize>(model, [&](FakeQuantize&) { ++count; });
  return count;
}

}  // namespace qforge::quant
