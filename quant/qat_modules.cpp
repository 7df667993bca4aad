#include "quant/qat_modules.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <utility>

#include "core/autograd.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/simple_layers.h"
#include "quant/bn_folding.h"
#include "quant/convert.h"
#include "quant/fake_quantize.h"
#include "quant/int8/integer_ops.h"
#include "quant/int8/kernels.h"
#include "quant/int8/requantize.h"

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

namespace {
// Whether a layer runs as deployed: evaluation with fake quantization on and a quantized input.
bool runs_as_deployed(const nn::Module& layer, const FakeQuantize* weight_quant,
                      const FakeQuantize* input_quant) {
  return !layer.is_training() && weight_quant && weight_quant->is_fake_quantizing() && input_quant &&
         input_quant->is_fake_quantizing() && input_quant->is_calibrated();
}

Tensor deployed_bias(const Tensor& bias, const FakeQuantize& input_quant, const FakeQuantize& weight_quant) {
  const std::vector<float> rounded =
      quantize_bias(bias.to_vector(), input_quant.qparams().scale[0], weight_quant.qparams().scale);
  return Tensor::from_vector({static_cast<int64_t>(rounded.size())}, rounded);
}

}  // namespace

// Note [The simulation runs the deployed arithmetic]
// Evaluated without gradients, a calibrated conv or linear layer (and each gate product of
// the static LSTM, quant/qat_lstm.cpp) computes its output as the integer runtime does
// (Note [Requantization], quant/int8/requantize.h), on float tensors in the simulation's
// layout:
//   - the input's levels q − z, recovered from its fake-quantized values (f32((q − z)·s)
//     times f32(1/s) lies within 1e-4 of the integer for |q − z| <= 255);
//   - the weights' int8 codes as convert makes them (deployed_layer);
//   - the accumulator Σ (q − z)·w as a float convolution of those integers, exact because
//     every partial sum is an integer of magnitude at most max|q − z|·max_j Σ|w_j| < 2^24
//     (checked per call; above it the float formula runs);
//   - the requantization's float operations on the accumulator, element by element.
// PyTorch's simulation instead rounds a float sum of dequantized products: for values within
// a float ulp of a rounding tie it lands on the other side than the integer accumulator, and
// where images have constant regions (Fashion-MNIST's black background) the same near-tie
// value recurs at every such position of every image — at 4 bits resnet20's integer model
// agreed with that simulation on 97.7% of test images, and here on all of them. Training,
// calibration (an observer watching the output), learned-rounding passes and anything that
// needs gradients keep the float formula: the gradient is the float layer's, and the two
// formulas differ only at ties.
std::optional<Deployed> deployed_arithmetic(const nn::Module& module, const FakeQuantize* weight_quant,
                                            const FakeQuantize* input_quant, FakeQuantize* output_quant,
                                            const Tensor& weight, const Tensor& bias, bool has_relu,
                                            std::initializer_list<const Tensor*> inputs, bool round_bias) {
  if (!runs_as_deployed(module, weight_quant, input_quant) || any_requires_grad(inputs)) return std::nullopt;
  if (output_quant && !output_quant->is_settled()) return std::nullopt;
  Deployed d;
  try {
    d.layer = deployed_layer(*weight_quant, weight, bias, *input_quant, output_quant, has_relu, "simulation",
                             round_bias);
  } catch (const ConvertError&) {  // not runnable as integers: the simulation's float formula
    return std::nullopt;
  }
  const int8::LayerQuantization& q = d.layer;
  d.stage = q.output ? int8::make_requantization(q.input, q.weight_scale, q.bias, *q.output, q.has_relu)
                     : int8::make_dequantization(q.input, q.weight_scale, q.bias, q.has_relu);
  // The codes as float once, not on every call (the LSTM runs its products at every time step).
  const int64_t out_channels = q.weight.size(0), per_channel = q.weight.numel() / out_channels;
  d.codes = Tensor::empty(q.weight.shape());
  const int8_t* codes = q.weight.data_as<int8_t>();
  float* as_float = d.codes.data();
  for (int64_t j = 0; j < out_channels; ++j) {
    double sum = 0;
    for (int64_t k = 0; k < per_channel; ++k) {
      const int8_t w = codes[j * per_channel + k];
      as_float[j * per_channel + k] = static_cast<float>(w);
      sum += std::abs(static_cast<int>(w));
    }
    d.widest = std::max(d.widest, sum);
  }
  return d;
}

// The deployed layer on `input` (fake-quantized values on the input quantizer's grid):
// `op` is the float conv or linear of the levels with the codes; nullopt when an
// accumulator could leave float's exact integers.
std::optional<Tensor> run_deployed(const Deployed& d, const Tensor& input,
                                   const std::function<Tensor(const Tensor&, const Tensor&)>& op) {
  const int8::LayerQuantization& q = d.layer;
  const int64_t out_channels = q.weight.size(0);
  const Tensor& x = input;
  Tensor levels = Tensor::empty(x.shape());
  const float inverse_scale = 1.0f / q.input.scale;  // x·(1/s) is within 1e-4 of q − z: rint is exact
  float largest = 0;
  int64_t non_finite = 0;  // a NaN or Inf input: the float formula says what it does
  const int64_t count = x.numel();
  const float* in = x.data();
  float* out_levels = levels.data();
#pragma omp parallel for reduction(max : largest) reduction(+ : non_finite) schedule(static) if (count >= (1 << 16))
  for (int64_t i = 0; i < count; ++i) {
    const float level = std::nearbyint(in[i] * inverse_scale);
    out_levels[i] = level;
    const float magnitude = std::fabs(level);
    non_finite += !(magnitude <= 3.0e38f);
    largest = std::max(largest, magnitude <= 3.0e38f ? magnitude : 0.0f);
  }
  if (non_finite > 0 || !(static_cast<double>(largest) * d.widest < 16777216.0)) return std::nullopt;
  const Tensor acc = op(levels, d.codes);
  if (acc.numel() == 0) return acc;  // an empty batch
  // acc is (N, O) or (N, O, H, W): rows of `inner` values per (image, channel j).
  const int64_t inner = acc.numel() / (acc.size(0) * out_channels), rows = acc.numel() / inner;
  Tensor y = Tensor::empty(acc.shape());
  const int8::OutputStage& s = d.stage;
  const float out_scale = q.output ? q.output->scale : 0.0f;
  const float* sums = acc.data();
  float* out = y.data();
#pragma omp parallel for schedule(static) if (acc.numel() >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t j = r % out_channels;
    const float multiplier = s.multiplier[j], bias = s.bias[j];
    for (int64_t i = r * inner; i < (r + 1) * inner; ++i) {
      const auto a = static_cast<int32_t>(sums[i]);
      if (s.is_float_output) {
        out[i] = int8::dequantize_accumulator(a, multiplier, bias, s.has_relu);
      } else {
        const uint8_t level = int8::requantize_one(a, multiplier, bias, s);
        out[i] = static_cast<float>(static_cast<int32_t>(level) - s.zero_point) * out_scale;
      }
    }
  }
  return y;
}

namespace {
// The layer's ReLU and output quantizer, fused into one pass when it has both (Note [ReLU
// in the quantizer], fake_quantize.cpp).
Tensor output_activation(const Tensor& y, bool has_relu, FakeQuantize* output_quant) {
  if (output_quant) return has_relu ? output_quant->forward_relu(y) : output_quant->forward(y);
  return has_relu ? relu(y) : y;
}
}  // namespace

Tensor QatConv2d::forward(const Tensor& input) {
  if (input_probe) input_probe(input);
  auto quantized = [&](const Tensor& w) { return weight_quant ? weight_quant->forward(w) : w; };
  Tensor y;
  if (runs_as_deployed(*this, weight_quant.get(), input_quant.get())) {
    // As convert deploys it: the folded conv, fake-quantized weights, the bias on its int32 grid.
    auto [weight, bias] = folded_weight_and_bias();
    if (auto deployed = deployed_arithmetic(*this, weight_quant.get(), input_quant.get(), output_quant.get(),
                                            weight, bias, has_relu, {&input, &weight, &bias})) {
      auto exact = run_deployed(*deployed, input, [&](const Tensor& levels, const Tensor& codes) {
        return conv2d(levels, codes, Tensor(), conv->options);
      });
      if (exact) return *exact;
    }
    y = conv2d(input, quantized(weight), deployed_bias(bias, *input_quant, *weight_quant), conv->options);
  } else if (bn) {
    const Tensor factor = bn_folding_factor(*bn);
    y = conv_bn_folded_forward(input, quantized(fold_weight(*conv, factor)), factor, *conv, *bn,
                               is_training() && !is_bn_frozen_);
  } else {
    y = conv2d(input, quantized(conv->weight), conv->bias, conv->options);
  }
  return output_activation(y, has_relu, output_quant.get());
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
  if (input_probe) input_probe(input);
  const Tensor weight = weight_quant ? weight_quant->forward(linear->weight) : linear->weight;
  Tensor bias = linear->bias;
  if (auto deployed = deployed_arithmetic(*this, weight_quant.get(), input_quant.get(), output_quant.get(),
                                          linear->weight, bias, has_relu, {&input, &linear->weight, &bias})) {
    auto exact = run_deployed(*deployed, input, [](const Tensor& levels, const Tensor& codes) {
      return qforge::linear(levels, codes);
    });
    if (exact) return *exact;
  }
  if (bias.defined() && runs_as_deployed(*this, weight_quant.get(), input_quant.get()))
    bias = deployed_bias(linear->bias.detach(), *input_quant, *weight_quant);
  Tensor y = qforge::linear(input, weight, bias);
  return output_activation(y, has_relu, output_quant.get());
}

void with_input_probe(std::function<void(const Tensor&)>& slot, std::function<void(const Tensor&)> probe,
                      const std::function<void()>& run) {
  slot = std::move(probe);
  try {
    run();
  } catch (...) {
    slot = nullptr;
    throw;
  }
  slot = nullptr;
}

QatAvgPool2d::QatAvgPool2d(nn::ModulePtr pool_, std::shared_ptr<FakeQuantize> source_)
    : pool(std::move(pool_)), source(std::move(source_)) {
  register_module("pool", pool);
}

namespace {

// Note [Pooling on the grid]: the integer average pool sums the input's levels exactly and
// rounds f32(acc)·f32(1/n); a float average of dequantized values rounded afterwards lands
// on the other side of a .5 tie whenever float error says so — and with a 2x2 window a
// quarter of all averages are ties (8% of lenet-sized predictions changed). So the
// simulation pools the levels with the very reference kernel the integer runtime runs:
// levels q = nearbyint(x·(1/s)) + z (exact: x is on the grid), shifted into uint8, pooled
// channels last, dequantized. Its gradient is the float pool's (the rounding's is the STE's 1).
Tensor pooled_on_grid(const Tensor& x, const Shape& out_shape, const nn::Module& pool, const QuantParams& p,
                      const QuantRange& range) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), oh = out_shape[2],
                ow = out_shape[3];
  const float scale = p.scale[0], inverse = 1.0f / scale;
  const int64_t zero_point = std::clamp(p.zero_point[0], range.quant_min, range.quant_max) - range.quant_min;
  std::vector<uint8_t> levels(x.numel()), pooled(n * oh * ow * c);
  const float* in = x.data();
  for (int64_t i = 0; i < n; ++i)  // NCHW floats -> NHWC levels
    for (int64_t k = 0; k < c; ++k)
      for (int64_t q = 0; q < h * w; ++q) {
        const float level = clamp_level(
            quantize_unclamped(in[(i * c + k) * h * w + q], inverse, static_cast<float>(p.zero_point[0])),
            static_cast<float>(range.quant_min), static_cast<float>(range.quant_max));
        levels[(i * h * w + q) * c + k] = static_cast<uint8_t>(level - static_cast<float>(range.quant_min));
      }
  int8::PoolShape shape{
      .batch = n, .channels = c, .in_height = h, .in_width = w, .out_height = oh, .out_width = ow};
  if (const auto* average = dynamic_cast<const nn::AvgPool2d*>(&pool)) {
    const Pool2dOptions& o = average->options;
    shape.kernel_height = o.kernel_height, shape.kernel_width = o.kernel_width;
    shape.stride_height = o.stride_height, shape.stride_width = o.stride_width;
    shape.padding_height = o.padding_height, shape.padding_width = o.padding_width;
    int8::reference::avg_pool2d(pooled.data(), levels.data(), shape, {}, static_cast<int32_t>(zero_point));
  } else {
    int8::reference::adaptive_avg_pool2d(pooled.data(), levels.data(), shape,
                                         static_cast<int32_t>(zero_point));
  }
  Tensor y = Tensor::empty(out_shape);
  float* out = y.data();
  for (int64_t i = 0; i < n; ++i)  // NHWC levels -> NCHW floats
    for (int64_t q = 0; q < oh * ow; ++q)
      for (int64_t k = 0; k < c; ++k)
        out[(i * c + k) * oh * ow + q] = dequantize_level(
            static_cast<float>(pooled[(i * oh * ow + q) * c + k]), scale, static_cast<float>(zero_point));
  return y;
}

}  // namespace

Tensor QatAvgPool2d::forward(const Tensor& input) {
  Tensor y = pool->forward(input);
  if (!source->is_fake_quantizing()) return y;  // calibration: the input was float too
  QF_CHECK(input.dim() == 4, type_name(), ": expected (N,C,H,W) input, got ", input.shape());
  Tensor exact =
      pooled_on_grid(input.detach(), y.shape(), *pool, source->qparams(), source->spec().scheme.range());
  if (!any_requires_grad({&y})) return exact;
  return record(exact, "avg_pool2d_on_grid", {y},
                [](const Tensor& g, const Node&) { return std::vector<Tensor>{g}; });
}

QatModel::QatModel(nn::ModulePtr model_, const QConfig& input_qconfig) : model(std::move(model_)) {
  input_quant = register_module("input_quant", std::make_shared<FakeQuantize>(input_qconfig.activation, 1));
  register_module("model", model);
}

}  // namespace qforge::quant
