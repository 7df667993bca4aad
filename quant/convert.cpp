// convert walks the prepared model in forward order, as its modules' forward() would, and
// emits one integer op per step. The walk carries the value flowing at that point: its
// id in the integer graph, whether it is uint8 (and with which parameters) or float, and
// its per-sample shape, so every op is built for its exact input size.
#include "quant/convert.h"

#include <sstream>
#include <typeindex>
#include <unordered_map>

#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/lstm.h"
#include "nn/module.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "quant/fake_quantize.h"
#include "quant/fuse.h"
#include "quant/int8/integer_ops.h"
#include "quant/int8/lstm_ops.h"
#include "quant/observer_factory.h"
#include "quant/qat_lstm.h"

namespace qforge::quant {

namespace {

using int8::ActivationQuant;
using int8::IntegerModel;
using int8::LayerQuantization;

template <typename... Args>
[[noreturn]] void refuse(const Args&... args) {
  std::ostringstream message;
  (message << ... << args);
  throw ConvertError(message.str());
}

template <typename... Args>
void check_convertible(bool is_convertible, const Args&... args) {
  if (!is_convertible) refuse(args...);
}

struct Stream {
  int value = 0;
  std::optional<ActivationQuant> quant;  // empty: float
  Shape shape;                           // per sample: (C,H,W) or (F)
  // (C,H,W) when the features are an NHWC image flattened in (h, w, c) order — uint8 or,
  // after a dequantize, float: a dequantize keeps the order of flat features.
  Shape flattened_from;
};

ActivationQuant activation_of(const FakeQuantize& q, const std::string& where) {
  check_convertible(q.is_calibrated(), "convert: ", where,
                    ": this quantizer has never seen data (calibrate with PTQ or train with QAT first)");
  const QuantParams p = q.qparams();
  const QuantRange range = q.spec().scheme.range();
  const int bits = q.spec().scheme.bits;
  check_convertible(!p.is_per_channel() && p.scale.size() == 1, "convert: ", where,
                    ": activations must be per tensor");
  check_convertible(bits >= 1 && range.levels() <= 256, "convert: ", where, ": ", bits,
                    "-bit activations; the integer runtime runs 1..8 bits");
  // Signed ranges shift into uint8: (q + s) − (z + s) = q − z, the same real values.
  const int64_t shift = -range.quant_min;
  const int64_t zero_point = std::clamp(p.zero_point[0], range.quant_min, range.quant_max) + shift;
  return {p.scale[0], static_cast<int32_t>(zero_point), 0, static_cast<int32_t>(range.quant_max + shift)};
}

// Weights quantized with the stored scales (per channel, or one scale repeated).
LayerQuantization quantize_layer(bool round_bias, const FakeQuantize& weight_quant, const Tensor& weight,
                                 const Tensor& bias, const ActivationQuant& input, FakeQuantize* output_quant,
                                 bool has_relu, const std::string& where) {
  check_convertible(weight_quant.is_calibrated(), "convert: ", where,
                    ": the weight quantizer has never seen the weights");
  const QuantScheme& scheme = weight_quant.spec().scheme;
  QuantParams p = weight_quant.qparams();
  // A binary quantizer's α is mean |w| of these very weights (Note [Binary weights]): computed
  // from them as the simulation computes it at every step, so a scale saved one optimizer step
  // before the weights cannot drift from them; a learned α is the parameter itself.
  if (scheme.binary && !weight_quant.spec().is_learnable)
    p.scale = binary_scale(weight.detach(), scheme.axis);
  const QuantRange range = scheme.range();
  const int bits = scheme.bits;
  check_convertible((bits >= 2 || scheme.binary) && range.quant_min >= -128 && range.quant_max <= 127,
                    "convert: ", where, ": ", bits, "-bit ", range.quant_min < 0 ? "signed" : "unsigned",
                    " weights; the integer runtime runs signed 2..8-bit and binary weights");
  for (int64_t z : p.zero_point)
    check_convertible(z == 0, "convert: ", where, ": weights have zero point ", z,
                      "; the integer runtime needs symmetric weights (zero point 0)");
  const int64_t out_channels = weight.size(0), per_channel = weight.numel() / out_channels;
  LayerQuantization layer;
  layer.weight_scale = p.is_per_channel() ? p.scale : std::vector<float>(out_channels, p.scale[0]);
  check_convertible(static_cast<int64_t>(layer.weight_scale.size()) == out_channels, "convert: ", where, ": ",
                    layer.weight_scale.size(), " weight scales for ", out_channels, " channels");
  layer.weight_range = {static_cast<int32_t>(range.quant_min), static_cast<int32_t>(range.quant_max),
                        scheme.binary};
  layer.weight = Tensor::empty(weight.shape(), DType::s8);
  const Tensor contiguous = weight.detach();
  int8::quantize_weights(layer.weight.data_as<int8_t>(), contiguous.data(), out_channels, per_channel,
                         layer.weight_scale, layer.weight_range);
  // Conv and linear biases on the accumulator's int32 grid, as the simulation ran them (Note
  // [Bias quantization]); the LSTM's gate products keep float biases, as its simulation does.
  if (bias.defined())
    layer.bias =
        round_bias ? quantize_bias(bias.to_vector(), input.scale, layer.weight_scale) : bias.to_vector();
  layer.input = input;
  if (output_quant) layer.output = activation_of(*output_quant, where + ".output_quant");
  layer.has_relu = has_relu;
  return layer;
}

class Lowering {
 public:
  explicit Lowering(IntegerModel& model) : model_(model) {}
  // Lowers one module; an error from building its ops is prefixed with its path.
  Stream lower(nn::Module& module, const std::string& path, const Stream& in);

 private:
  Stream lower_module(nn::Module& module, const std::string& path, const Stream& in);
  Stream emit(std::unique_ptr<int8::IntegerOp> op, std::vector<int> inputs, const std::string& path,
              Stream out) {
    out.value = model_.add(std::move(op), std::move(inputs), path);
    return out;
  }
  Stream to_float(const Stream& in, const std::string& path) {
    if (!in.quant) return in;
    Stream out = in;
    out.quant.reset();
    return emit(std::make_unique<int8::DequantizeOp>(), {in.value}, path, out);
  }
  Stream quantize(const Stream& in, FakeQuantize& q, const std::string& path) {
    Stream source = to_float(in, path);
    Stream out = source;
    out.quant = activation_of(q, path);
    return emit(std::make_unique<int8::QuantizeOp>(*out.quant), {source.value}, path, out);
  }
  const ActivationQuant& need_quantized(const Stream& in, const std::string& path, const char* what) {
    check_convertible(in.quant.has_value(), "convert: ", path, " (", what,
                      "): its input is float — no quantizer precedes it");
    return *in.quant;
  }
  // A conv or linear layer kept in float: dequantize, the float layer, quantize its output
  // for the next integer layer (or keep it float: the network's last layer).
  Stream float_layer(const Tensor& weight, const Tensor& bias, bool has_relu,
                     std::optional<Conv2dOptions> conv, const Shape& out_shape, FakeQuantize* output_quant,
                     const std::string& path, const Stream& in);
  Stream pool(nn::Module& pool, const std::string& path, const Stream& in);

  // The rules of the lowering table, one per module type (lowering_rules below).
  Stream conv(nn::Module& module, const std::string& path, const Stream& in);
  Stream linear(nn::Module& module, const std::string& path, const Stream& in);
  Stream block(nn::Module& module, const std::string& path, const Stream& in);
  Stream sequence_classifier(nn::Module& module, const std::string& path, const Stream& in);
  Stream sequence(nn::Module& module, const std::string& path, const Stream& in);
  Stream resnet(nn::Module& module, const std::string& path, const Stream& in);
  Stream average_pool(nn::Module& module, const std::string& path, const Stream& in);
  Stream max_pool(nn::Module& module, const std::string& path, const Stream& in) {
    return pool(module, path, in);
  }
  Stream pass_through(nn::Module&, const std::string&, const Stream& in) { return in; }
  Stream fake_quantize(nn::Module& module, const std::string& path, const Stream& in) {
    return quantize(in, static_cast<FakeQuantize&>(module), path);
  }
  Stream relu(nn::Module& module, const std::string& path, const Stream& in);
  Stream flatten(nn::Module& module, const std::string& path, const Stream& in);

  using Rule = Stream (Lowering::*)(nn::Module&, const std::string&, const Stream&);
  static const std::unordered_map<std::type_index, Rule>& lowering_rules();

  IntegerModel& model_;
};

// Note [Lowering table]: what each module of a prepared model becomes in the integer model,
// by its exact type — PyTorch's quantization_mappings.py keeps the same one table from
// float module to quantized module. A type not in it has no integer op (ConvertError).
const std::unordered_map<std::type_index, Lowering::Rule>& Lowering::lowering_rules() {
  static const std::unordered_map<std::type_index, Rule> rules{
      {typeid(nn::Sequential), &Lowering::sequence},
      {typeid(nn::ResNet), &Lowering::resnet},
      {typeid(nn::BasicBlock), &Lowering::block},
      {typeid(nn::LstmClassifier), &Lowering::sequence_classifier},
      {typeid(QatConv2d), &Lowering::conv},
      {typeid(QatLinear), &Lowering::linear},
      {typeid(QatAvgPool2d), &Lowering::average_pool},
      {typeid(nn::MaxPool2d), &Lowering::max_pool},
      {typeid(nn::Identity), &Lowering::pass_through},
      {typeid(nn::Dropout), &Lowering::pass_through},
      {typeid(FakeQuantize), &Lowering::fake_quantize},
      {typeid(nn::ReLU), &Lowering::relu},
      {typeid(nn::Flatten), &Lowering::flatten}};
  return rules;
}

Stream Lowering::float_layer(const Tensor& weight, const Tensor& bias, bool has_relu,
                             std::optional<Conv2dOptions> conv, const Shape& out_shape,
                             FakeQuantize* output_quant, const std::string& path, const Stream& in) {
  const Stream source = to_float(in, path);
  const Stream out = emit(std::make_unique<int8::FloatLayerOp>(weight, bias, has_relu, conv), {source.value},
                          path, Stream{0, std::nullopt, out_shape, {}});
  return output_quant ? quantize(out, *output_quant, path + ".output_quant") : out;
}

Stream Lowering::conv(nn::Module& module, const std::string& path, const Stream& in) {
  auto& layer = static_cast<QatConv2d&>(module);
  const nn::Conv2d& c = *layer.conv;
  check_convertible(in.shape.size() == 3 && in.shape[0] == c.in_channels, "convert: ", path,
                    ": expected input (", c.in_channels, ",H,W), got ", in.shape);
  kernels::Conv2dShape s{.batch = 0,
                         .in_channels = c.in_channels,
                         .in_height = in.shape[1],
                         .in_width = in.shape[2],
                         .out_channels = c.out_channels,
                         .kernel_height = c.kernel_size,
                         .kernel_width = c.kernel_size,
                         .stride_height = c.options.stride_height,
                         .stride_width = c.options.stride_width,
                         .padding_height = c.options.padding_height,
                         .padding_width = c.options.padding_width,
                         .dilation_height = c.options.dilation_height,
                         .dilation_width = c.options.dilation_width,
                         .groups = c.options.groups};
  check_convertible(s.out_height() >= 1 && s.out_width() >= 1, "convert: ", path,
                    ": the kernel does not fit the input ", in.shape);
  auto [weight, bias] = layer.folded_weight_and_bias();
  Stream out = in;
  out.shape = {s.out_channels, s.out_height(), s.out_width()};
  if (!layer.weight_quant)
    return float_layer(weight, bias, layer.has_relu, c.options, out.shape, layer.output_quant.get(), path,
                       in);
  const ActivationQuant& input = need_quantized(in, path, "conv2d");
  LayerQuantization q = quantize_layer(true, *layer.weight_quant, weight, bias, input,
                                       layer.output_quant.get(), layer.has_relu, path);
  out.quant = q.output;
  return emit(std::make_unique<int8::ConvOp>(std::move(q), s), {in.value}, path, out);
}

Stream Lowering::linear(nn::Module& module, const std::string& path, const Stream& in) {
  auto& layer = static_cast<QatLinear&>(module);
  const nn::Linear& l = *layer.linear;
  check_convertible(in.shape.size() == 1 && in.shape[0] == l.in_features, "convert: ", path, ": expected ",
                    l.in_features, " input features, got ", in.shape, " (a flatten is missing?)");
  Tensor weight = l.weight.detach();
  if (!in.flattened_from.empty()) {
    // The features are an NHWC image flattened as (h, w, c); the float model flattened
    // (c, h, w). Permute the weight columns once so no transpose runs at inference — for
    // the integer op and for a layer kept in float alike.
    const int64_t channels = in.flattened_from[0], pixels = in.flattened_from[1] * in.flattened_from[2];
    Tensor permuted = Tensor::empty(weight.shape());
    for (int64_t o = 0; o < l.out_features; ++o)
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t p = 0; p < pixels; ++p)
          permuted.data()[o * l.in_features + p * channels + c] =
              weight.data()[o * l.in_features + c * pixels + p];
    weight = permuted;
  }
  Stream out{0, std::nullopt, {l.out_features}, {}};
  const Tensor bias = l.bias.defined() ? l.bias.detach() : Tensor();
  if (!layer.weight_quant)
    return float_layer(weight, bias, layer.has_relu, std::nullopt, out.shape, layer.output_quant.get(), path,
                       in);
  const ActivationQuant& input = need_quantized(in, path, "linear");
  LayerQuantization q = quantize_layer(true, *layer.weight_quant, weight, bias, input,
                                       layer.output_quant.get(), layer.has_relu, path);
  out.quant = q.output;
  return emit(std::make_unique<int8::LinearOp>(std::move(q)), {in.value}, path, out);
}

Stream Lowering::pool(nn::Module& module, const std::string& path, const Stream& in) {
  need_quantized(in, path, module.type_name().c_str());
  check_convertible(in.shape.size() == 3, "convert: ", path, ": pooling expects an image, got ", in.shape);
  Stream out = in;
  if (auto* adaptive = dynamic_cast<nn::AdaptiveAvgPool2d*>(&module)) {
    out.shape = {in.shape[0], adaptive->out_height, adaptive->out_width};
    return emit(std::make_unique<int8::AdaptiveAvgPoolOp>(adaptive->out_height, adaptive->out_width),
                {in.value}, path, out);
  }
  const bool is_max = dynamic_cast<nn::MaxPool2d*>(&module) != nullptr;
  const Pool2dOptions& o =
      is_max ? dynamic_cast<nn::MaxPool2d&>(module).options : dynamic_cast<nn::AvgPool2d&>(module).options;
  const int64_t dh = is_max ? o.dilation_height : 1, dw = is_max ? o.dilation_width : 1;
  out.shape = {
      in.shape[0],
      int8::pool_output_size(in.shape[1], o.kernel_height, o.stride_height, o.padding_height, dh, false),
      int8::pool_output_size(in.shape[2], o.kernel_width, o.stride_width, o.padding_width, dw, false)};
  check_convertible(out.shape[1] >= 1 && out.shape[2] >= 1, "convert: ", path,
                    ": the pooling window does not fit ", in.shape);
  int8::PoolGeometry geometry{.window = o};
  return emit(std::make_unique<int8::PoolOp>(is_max ? int8::PoolOp::Kind::max : int8::PoolOp::Kind::average,
                                             geometry),
              {in.value}, path, out);
}

Stream Lowering::block(nn::Module& module, const std::string& path, const Stream& in) {
  auto& block = static_cast<nn::BasicBlock&>(module);
  Stream residual = lower(*block.residual, nn::child_path(path, "residual"), in);
  Stream shortcut = block.shortcut ? lower(*block.shortcut, nn::child_path(path, "shortcut"), in) : in;
  // prepare made the block's relu Sequential(ReLU or Identity, FakeQuantize): add [+ ReLU] + requantize.
  auto* relu = dynamic_cast<nn::Sequential*>(block.relu.get());
  FakeQuantize* output =
      relu && relu->size() == 2 ? dynamic_cast<FakeQuantize*>(relu->children()[1].second.get()) : nullptr;
  const bool has_relu = relu && dynamic_cast<nn::ReLU*>(relu->children()[0].second.get()) != nullptr;
  check_convertible(output, "convert: ", path,
                    ": a residual block kept in float is not supported by the integer runtime");
  need_quantized(residual, path, "add"), need_quantized(shortcut, path, "add");
  check_convertible(residual.shape == shortcut.shape, "convert: ", path, ": residual ", residual.shape,
                    " and shortcut ", shortcut.shape, " differ");
  Stream out = residual;
  out.quant = activation_of(*output, nn::child_path(path, "relu.1"));
  return emit(std::make_unique<int8::AddOp>(*out.quant, has_relu), {residual.value, shortcut.value},
              nn::child_path(path, "add"), out);
}

// The zoo's LstmClassifier: image rows -> QatLSTM -> the last hidden state -> fc.
Stream Lowering::sequence_classifier(nn::Module& module, const std::string& path, const Stream& in) {
  auto& model = static_cast<nn::LstmClassifier&>(module);
  auto* lstm = dynamic_cast<QatLSTM*>(model.lstm.get());
  check_convertible(lstm, "convert: ", nn::child_path(path, "lstm"), " (", model.lstm->type_name(),
                    "): a float LSTM in a static model; keep it quantized, or use quant.mode \"dynamic\"");
  const std::string where = nn::child_path(path, "lstm");
  ActivationQuant input = need_quantized(in, where, "lstm");
  std::vector<int8::StaticLstmLayer> layers;
  const nn::LSTM& float_lstm = *lstm->lstm;
  for (int64_t l = 0; l < lstm->num_layers(); ++l) {
    const std::string layer = where + ".l" + std::to_string(l);
    int8::StaticLstmLayer q;
    q.gates = activation_of(*lstm->gates_quant[l], layer + ".gates_quant");
    q.state = activation_of(*lstm->hidden_quant[l], layer + ".hidden_quant");
    q.input = quantize_layer(false, *lstm->weight_ih_quant[l], float_lstm.weight_ih[l].detach(),
                             float_lstm.bias_ih[l].detach(), input, nullptr, false, layer + ".weight_ih");
    q.hidden = quantize_layer(false, *lstm->weight_hh_quant[l], float_lstm.weight_hh[l].detach(),
                              float_lstm.bias_hh[l].detach(), q.state, nullptr, false, layer + ".weight_hh");
    input = q.state;
    layers.push_back(std::move(q));
  }
  Stream out{0, input, {lstm->hidden_size()}, {}};
  out = emit(std::make_unique<int8::StaticLstmOp>(std::move(layers)), {in.value}, where, out);
  return lower(*model.fc, nn::child_path(path, "fc"), out);
}

Stream Lowering::lower(nn::Module& module, const std::string& path, const Stream& in) {
  try {
    return lower_module(module, path, in);
  } catch (const ConvertError&) {
    throw;
  } catch (const Error& error) {
    QF_FAIL("convert: ", path.empty() ? "the model" : path, " (", module.type_name(), "): ", error.what());
  }
}

Stream Lowering::sequence(nn::Module& module, const std::string& path, const Stream& in) {
  Stream out = in;
  for (const auto& [name, child] : module.children()) out = lower(*child, nn::child_path(path, name), out);
  return out;
}

Stream Lowering::resnet(nn::Module& module, const std::string& path, const Stream& in) {
  auto& net = static_cast<nn::ResNet&>(module);
  const Stream stem = lower(*net.stem, nn::child_path(path, "stem"), in);
  return lower(*net.head, nn::child_path(path, "head"),
               lower(*net.layers, nn::child_path(path, "layers"), stem));
}

Stream Lowering::average_pool(nn::Module& module, const std::string& path, const Stream& in) {
  return pool(*static_cast<QatAvgPool2d&>(module).pool, nn::child_path(path, "pool"), in);
}

Stream Lowering::relu(nn::Module&, const std::string& path, const Stream& in) {
  need_quantized(in, path, "relu");
  return emit(std::make_unique<int8::ReluOp>(), {in.value}, path, in);
}

Stream Lowering::flatten(nn::Module&, const std::string& path, const Stream& in) {
  Stream out = in;
  if (in.shape.size() == 3) {
    out.shape = {in.shape[0] * in.shape[1] * in.shape[2]};
    if (in.quant && in.shape[1] * in.shape[2] > 1) out.flattened_from = in.shape;
  }
  return emit(std::make_unique<int8::FlattenOp>(), {in.value}, path, out);
}

Stream Lowering::lower_module(nn::Module& module, const std::string& path, const Stream& in) {
  const auto rule = lowering_rules().find(typeid(module));
  if (rule != lowering_rules().end()) return (this->*(rule->second))(module, path, in);
  refuse("convert: ", path.empty() ? "the model" : path, " (", module.type_name(),
         "): the integer runtime has no op for this module");
}

}  // namespace

int8::IntegerModel convert(QatModel& model, const Shape& input_shape) {
  QF_CHECK(!input_shape.empty(), "convert: the input shape is empty");
  // Note [Finiteness gate] (nn/module.h): a diverged model converts into nothing.
  const std::string non_finite = nn::first_non_finite(model);
  QF_CHECK(non_finite.empty(), "convert: ", non_finite, "; the model diverged — nothing was converted");
  IntegerModel integer;
  integer.input_shape = input_shape;
  Lowering lowering(integer);
  // A sequence model reads the image as rows in the float layout; images go channels last.
  const bool is_sequence_model = dynamic_cast<nn::LstmClassifier*>(model.model.get()) != nullptr;
  Stream out{0, activation_of(*model.input_quant, "input"), input_shape, {}};
  out.value = integer.add(std::make_unique<int8::QuantizeOp>(*out.quant, !is_sequence_model), {0}, "input");
  out = lowering.lower(*model.model, "", out);
  // The runtime flattens images channels last; a linear layer reads them through permuted
  // weights, but logits that are themselves a flattened image would come out permuted.
  check_convertible(
      out.flattened_from.empty(), "convert: output: the model ends in a flattened ", out.flattened_from,
      " image; the integer runtime flattens (h, w, c) where the float model "
      "flattens (c, h, w) — end the model with a linear layer, or pool to 1x1 before the flatten");
  if (out.quant) {
    Stream source = out;
    out.value = integer.add(std::make_unique<int8::DequantizeOp>(), {source.value}, "output");
  }
  integer.check();  // the graph check a file gets on load; here it guards convert itself
  return integer;
}

// ---- dynamic quantization --------------------------------------------------------------------

namespace {

// Weights quantized with scales their observer computes now (dynamic quantization has no
// training to take them from): PyTorch's quantize_dynamic observes weights at convert too.
int8::DynamicLinear dynamic_product(const Tensor& weight, const Tensor& bias, const QuantizerSpec& spec,
                                    bool has_relu, const std::string& where) {
  QuantScheme scheme = spec.scheme;
  check_convertible(scheme.is_signed && scheme.symmetric && scheme.bits >= 2 && scheme.bits <= 8,
                    "convert (dynamic): ", where, ": weights must be signed, symmetric, 2..8 bits");
  std::unique_ptr<Observer> observer = make_observer(ObserverChoice{ObserverKind::minmax}, scheme);
  const Tensor w = weight.detach();
  observer->observe(w);
  const QuantParams p = observer->calculate_qparams();
  const int64_t rows = w.size(0);
  std::vector<float> scale = p.is_per_channel() ? p.scale : std::vector<float>(rows, p.scale[0]);
  const QuantRange range = scheme.range();
  Tensor q = Tensor::empty(w.shape(), DType::s8);
  int8::quantize_weights(q.data_as<int8_t>(), w.data(), rows, w.numel() / rows, scale,
                         {static_cast<int32_t>(range.quant_min), static_cast<int32_t>(range.quant_max)});
  return int8::DynamicLinear(q, scale, bias.defined() ? bias.detach().to_vector() : std::vector<float>{},
                             has_relu);
}

int lower_dynamic(IntegerModel& integer, nn::Module& module, const std::string& path, int value,
                  const QuantizerSpec& weight) {
  if (auto* classifier = dynamic_cast<nn::LstmClassifier*>(&module)) {
    auto* lstm = dynamic_cast<nn::LSTM*>(classifier->lstm.get());
    check_convertible(lstm, "convert (dynamic): ", nn::child_path(path, "lstm"), " is not a float LSTM");
    std::vector<int8::DynamicLstmLayer> layers;
    for (int64_t l = 0; l < lstm->num_layers(); ++l) {
      const std::string where = nn::child_path(path, "lstm.l" + std::to_string(l));
      layers.push_back(
          {dynamic_product(lstm->weight_ih[l], lstm->bias_ih[l], weight, false, where + ".weight_ih"),
           dynamic_product(lstm->weight_hh[l], lstm->bias_hh[l], weight, false, where + ".weight_hh")});
    }
    value = integer.add(std::make_unique<int8::DynamicLstmOp>(std::move(layers)), {value},
                        nn::child_path(path, "lstm"));
    return lower_dynamic(integer, *classifier->fc, nn::child_path(path, "fc"), value, weight);
  }
  if (auto* sequential = dynamic_cast<nn::Sequential*>(&module)) {
    const auto& children = sequential->children();
    for (std::size_t i = 0; i < children.size();) {
      const std::string child_path = nn::child_path(path, children[i].first);
      if (auto run = match_fusion(children, i); run && run->linear) {
        value = integer.add(std::make_unique<int8::DynamicLinearOp>(dynamic_product(
                                run->linear->weight, run->linear->bias, weight, run->has_relu, child_path)),
                            {value}, child_path);
        i += run->length;
        continue;
      }
      value = lower_dynamic(integer, *children[i].second, child_path, value, weight);
      ++i;
    }
    return value;
  }
  if (auto* linear = dynamic_cast<nn::Linear*>(&module))
    return integer.add(std::make_unique<int8::DynamicLinearOp>(
                           dynamic_product(linear->weight, linear->bias, weight, false, path)),
                       {value}, path);
  if (dynamic_cast<nn::Flatten*>(&module))
    return integer.add(std::make_unique<int8::FlattenOp>(), {value}, path);
  if (dynamic_cast<nn::Identity*>(&module) || dynamic_cast<nn::Dropout*>(&module)) return value;
  refuse("convert (dynamic): ", path.empty() ? "the model" : path, " (", module.type_name(),
         "): dynamic quantization covers Linear and LSTM layers (as PyTorch's quantize_dynamic); use static "
         "quantization (quant.mode \"static\") for convolutional models");
}

}  // namespace

int8::IntegerModel convert_dynamic(nn::Module& model, const QuantizerSpec& weight, const Shape& input_shape) {
  QF_CHECK(!input_shape.empty(), "convert: the input shape is empty");
  IntegerModel integer;
  integer.input_shape = input_shape;
  lower_dynamic(integer, model, "", 0, weight);
  check_convertible(!integer.ops().empty(), "convert (dynamic): the model has no Linear or LSTM layer");
  integer.check();  // the graph check a file gets on load; here it guards convert itself
  return integer;
}

int8::LayerQuantization deployed_layer(const FakeQuantize& weight_quant, const Tensor& weight,
                                       const Tensor& bias, const FakeQuantize& input_quant,
                                       FakeQuantize* output_quant, bool has_relu, const std::string& where,
                                       bool round_bias) {
  return quantize_layer(round_bias, weight_quant, weight, bias,
                        activation_of(input_quant, where + " (input)"), output_quant, has_relu, where);
}

}  // namespace qforge::quant
