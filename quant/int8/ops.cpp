#include "quant/int8/ops.h"

#include <cmath>

#include "core/autograd.h"
#include "core/config_reader.h"
#include "core/ops.h"

namespace qforge::quant::int8 {

namespace {

const Value& only_input(const std::vector<const Value*>& inputs, const IntegerOp& op) {
  QF_CHECK(inputs.size() == 1 && inputs[0]->data.defined(), op.kind(), " ", op.name, ": expected one input");
  return *inputs[0];
}

const Value& quantized_input(const std::vector<const Value*>& inputs, const IntegerOp& op, int64_t rank) {
  const Value& x = only_input(inputs, op);
  QF_CHECK(x.is_quantized() && (rank == 0 || x.data.dim() == rank), op.kind(), " ", op.name, ": expected ",
           rank == 4 ? "uint8 (N,H,W,C)" : "uint8", " input, got ", dtype_name(x.data.dtype()), " ",
           x.data.shape());
  return x;
}

bool same(const ActivationQuant& a, const ActivationQuant& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point && a.quant_min == b.quant_min &&
         a.quant_max == b.quant_max;
}

void check_input_quant(const Value& x, const ActivationQuant& expected, const IntegerOp& op) {
  QF_CHECK(same(x.quant, expected), op.kind(), " ", op.name, ": input quantized with scale ", x.quant.scale,
           ", zero point ", x.quant.zero_point, "; the layer was converted for scale ", expected.scale,
           ", zero point ", expected.zero_point);
}

Tensor u8(const Shape& shape) { return Tensor::empty(shape, DType::u8); }

// Layout moves between the float model's NCHW and the runtime's NHWC.
template <typename T>
Tensor nchw_to_nhwc(const Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  Tensor y = Tensor::empty({n, x.size(2), x.size(3), c}, x.dtype());
  const T* in = x.data_as<T>();
  T* out = y.data_as<T>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t p = 0; p < hw; ++p) out[(i * hw + p) * c + k] = in[(i * c + k) * hw + p];
  return y;
}

template <typename T>
Tensor nhwc_to_nchw(const Tensor& x) {
  const int64_t n = x.size(0), c = x.size(3), hw = x.size(1) * x.size(2);
  Tensor y = Tensor::empty({n, c, x.size(1), x.size(2)}, x.dtype());
  const T* in = x.data_as<T>();
  T* out = y.data_as<T>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t k = 0; k < c; ++k) out[(i * c + k) * hw + p] = in[(i * hw + p) * c + k];
  return y;
}

OutputStage stage_of(const LayerQuantization& layer) {
  return layer.output
             ? make_requantization(layer.input, layer.weight_scale, layer.bias, *layer.output, layer.has_relu)
             : make_dequantization(layer.input, layer.weight_scale, layer.bias, layer.has_relu);
}

void check_layer(const LayerQuantization& layer, int64_t out_channels, const std::string& what) {
  QF_CHECK(layer.weight.defined() && layer.weight.dtype() == DType::s8, what, ": weights must be int8");
  QF_CHECK(static_cast<int64_t>(layer.weight_scale.size()) == out_channels, what, ": ",
           layer.weight_scale.size(), " weight scales for ", out_channels, " output channels");
  QF_CHECK(layer.bias.empty() || static_cast<int64_t>(layer.bias.size()) == out_channels, what, ": ",
           layer.bias.size(), " biases for ", out_channels, " output channels");
  for (float s : layer.weight_scale)
    QF_CHECK(std::isfinite(s) && s > 0, what, ": weight scale ", s, " is not positive");
  for (float b : layer.bias) QF_CHECK(std::isfinite(b), what, ": bias ", b, " is not finite");
  const int8_t* w = layer.weight.data_as<int8_t>();
  for (int64_t i = 0; i < layer.weight.numel(); ++i)
    QF_CHECK(w[i] >= layer.weight_range.quant_min && w[i] <= layer.weight_range.quant_max, what, ": weight ",
             int{w[i]}, " outside its range [", layer.weight_range.quant_min, ", ",
             layer.weight_range.quant_max, "]");
}

Tensor tensor_of(const std::vector<float>& v) {
  return Tensor::from_vector({static_cast<int64_t>(v.size())}, v);
}

// Note [Packed weights] (ops.h).
Tensor pack_weight(const Tensor& weight, int64_t quant_min, int bits) {
  const int64_t n = weight.numel();
  Tensor packed = Tensor::zeros({(n * bits + 7) / 8}, DType::u8);
  const int8_t* w = weight.data_as<int8_t>();
  uint8_t* out = packed.data_as<uint8_t>();
  for (int64_t k = 0; k < n; ++k)
    out[k * bits / 8] |= static_cast<uint8_t>((w[k] - quant_min) << (k * bits % 8));
  return packed;
}

// What a conv2d and a linear op save alike: weights (packed at 4 bits or fewer), scales,
// bias, and the header fields of layer_quantization (ops_load.cpp).
nlohmann::json save_layer(TensorMap& blobs, const std::string& prefix, const LayerQuantization& layer) {
  const WeightRange& range = layer.weight_range;
  nlohmann::json entry = {{"relu", layer.has_relu},
                          {"input", to_json(layer.input)},
                          {"weight_range", {range.quant_min, range.quant_max}},
                          {"output", layer.output ? to_json(*layer.output) : nlohmann::json()}};
  if (const int bits = packed_weight_bits(range.quant_max - range.quant_min + 1)) {
    blobs[prefix + "weight"] = pack_weight(layer.weight, range.quant_min, bits);
    entry["packed_weight"] = {{"bits", bits}};
  } else {
    blobs[prefix + "weight"] = layer.weight;
  }
  blobs[prefix + "weight_scale"] = tensor_of(layer.weight_scale);
  if (!layer.bias.empty()) blobs[prefix + "bias"] = tensor_of(layer.bias);
  return entry;
}

}  // namespace

nlohmann::json to_json(const ActivationQuant& q) {
  return {{"scale", q.scale},
          {"zero_point", q.zero_point},
          {"quant_min", q.quant_min},
          {"quant_max", q.quant_max}};
}

// ---- quantize / dequantize -------------------------------------------------------------------

Value QuantizeOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = only_input(inputs, *this);
  QF_CHECK(x.data.dtype() == DType::f32 && x.data.dim() >= 2, "quantize ", name,
           ": expected float input, got ", dtype_name(x.data.dtype()), " ", x.data.shape());
  const int64_t n = x.data.numel();
  const float* values = x.data.data();
  for (int64_t i = 0; i < n; ++i)
    QF_CHECK(!std::isnan(values[i]), "quantize ", name, ": input element ", i, " is NaN");
  Tensor source = x.data.dim() == 4 && channels_last_ ? nchw_to_nhwc<float>(x.data) : x.data;
  Value y{u8(source.shape()), output_};
  (backend == Backend::reference ? reference::quantize : fast::quantize)(y.data.data_as<uint8_t>(),
                                                                         source.data(), n, output_);
  return y;
}

nlohmann::json QuantizeOp::save(TensorMap&, const std::string&) const {
  return {{"output", to_json(output_)}};
}

Value DequantizeOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 0);
  Tensor y = Tensor::empty(x.data.shape());
  (backend == Backend::reference ? reference::dequantize : fast::dequantize)(
      y.data(), x.data.data_as<uint8_t>(), y.numel(), x.quant);
  return {y.dim() == 4 ? nhwc_to_nchw<float>(y) : y, {}};
}

// ---- conv / linear ------------------------------------------------------------------------------

ConvOp::ConvOp(LayerQuantization layer, const Conv2dShape& shape) : layer_(std::move(layer)), shape_(shape) {
  check_layer(layer_, shape_.out_channels, "conv2d");
  QF_CHECK(layer_.weight.shape() == Shape({shape_.out_channels, shape_.in_channels / shape_.groups,
                                           shape_.kernel_height, shape_.kernel_width}),
           "conv2d: weights ", layer_.weight.shape(), " do not match the layer's shape");
  QF_CHECK(shape_.out_height() >= 1 && shape_.out_width() >= 1, "conv2d: a ", shape_.kernel_height, "x",
           shape_.kernel_width, " kernel does not fit a ", shape_.in_height, "x", shape_.in_width, " input");
  stage_ = stage_of(layer_);
  fast_ = std::make_unique<fast::Conv2dLayer>(layer_.weight.data_as<int8_t>(), shape_,
                                              layer_.input.zero_point, stage_);
}

Value ConvOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 4);
  QF_CHECK(x.data.size(1) == shape_.in_height && x.data.size(2) == shape_.in_width &&
               x.data.size(3) == shape_.in_channels,
           "conv2d ", name, ": expected input (N,", shape_.in_height, ",", shape_.in_width, ",",
           shape_.in_channels, ") channels last, got ", x.data.shape());
  check_input_quant(x, layer_.input, *this);
  Conv2dShape s = shape_;
  s.batch = x.data.size(0);
  const Shape out_shape{s.batch, s.out_height(), s.out_width(), s.out_channels};
  const uint8_t* in = x.data.data_as<uint8_t>();
  const int8_t* w = layer_.weight.data_as<int8_t>();
  if (layer_.output) {
    Value y{u8(out_shape), *layer_.output};
    if (backend == Backend::reference)
      reference::conv2d(y.data.data_as<uint8_t>(), in, w, s, layer_.input.zero_point, stage_);
    else
      fast_->run(y.data.data_as<uint8_t>(), in, s.batch);
    return y;
  }
  Tensor y = Tensor::empty(out_shape);
  if (backend == Backend::reference) {
    std::vector<int32_t> acc(y.numel());
    reference::conv2d_accumulate(acc.data(), in, w, s, layer_.input.zero_point);
    reference::dequantize_accumulators(y.data(), acc.data(), y.numel() / s.out_channels, s.out_channels,
                                       stage_);
  } else {
    fast_->run(y.data(), in, s.batch);
  }
  return {nhwc_to_nchw<float>(y), {}};
}

nlohmann::json ConvOp::save(TensorMap& blobs, const std::string& prefix) const {
  const Conv2dShape& s = shape_;
  nlohmann::json entry = save_layer(blobs, prefix, layer_);
  entry.update({{"in_shape", {s.in_channels, s.in_height, s.in_width}},
                {"out_channels", s.out_channels},
                {"kernel", {s.kernel_height, s.kernel_width}},
                {"stride", {s.stride_height, s.stride_width}},
                {"padding", {s.padding_height, s.padding_width}},
                {"dilation", {s.dilation_height, s.dilation_width}},
                {"groups", s.groups}});
  return entry;
}

LinearOp::LinearOp(LayerQuantization layer) : layer_(std::move(layer)) {
  QF_CHECK(layer_.weight.defined() && layer_.weight.dim() == 2, "linear: expected (N,K) weights");
  check_layer(layer_, layer_.weight.size(0), "linear");
  stage_ = stage_of(layer_);
  fast_ = std::make_unique<fast::LinearLayer>(layer_.weight.data_as<int8_t>(), layer_.weight.size(0),
                                              layer_.weight.size(1), layer_.input.zero_point, stage_);
}

Value LinearOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 0);
  const int64_t n = layer_.weight.size(0), k = layer_.weight.size(1);
  QF_CHECK(x.data.dim() >= 2 && x.data.size(-1) == k, "linear ", name, ": expected input (...,", k, "), got ",
           x.data.shape());
  check_input_quant(x, layer_.input, *this);
  const int64_t m = x.data.numel() / k;
  Shape out_shape = x.data.shape();
  out_shape.back() = n;
  const uint8_t* in = x.data.data_as<uint8_t>();
  const int8_t* w = layer_.weight.data_as<int8_t>();
  if (layer_.output) {
    Value y{u8(out_shape), *layer_.output};
    if (backend == Backend::reference)
      reference::linear(y.data.data_as<uint8_t>(), in, w, m, n, k, layer_.input.zero_point, stage_);
    else
      fast_->run(y.data.data_as<uint8_t>(), in, m);
    return y;
  }
  Tensor y = Tensor::empty(out_shape);
  if (backend == Backend::reference) {
    std::vector<int32_t> acc(m * n);
    reference::linear_accumulate(acc.data(), in, w, m, n, k, layer_.input.zero_point);
    reference::dequantize_accumulators(y.data(), acc.data(), m, n, stage_);
  } else {
    fast_->run(y.data(), in, m);
  }
  return {y, {}};
}

nlohmann::json LinearOp::save(TensorMap& blobs, const std::string& prefix) const {
  nlohmann::json entry = save_layer(blobs, prefix, layer_);
  entry.update({{"in_features", layer_.weight.size(1)}, {"out_features", layer_.weight.size(0)}});
  return entry;
}

// ---- elementwise, pools, flatten -------------------------------------------------------------

Value ReluOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 0);
  Value y{u8(x.data.shape()), x.quant};
  (backend == Backend::reference ? reference::relu : fast::relu)(
      y.data.data_as<uint8_t>(), x.data.data_as<uint8_t>(), x.data.numel(), x.quant.zero_point);
  return y;
}

namespace {
PoolShape pool_shape(const Value& x, const Pool2dOptions& w, int64_t out_height, int64_t out_width) {
  return {.batch = x.data.size(0),
          .channels = x.data.size(3),
          .in_height = x.data.size(1),
          .in_width = x.data.size(2),
          .out_height = out_height,
          .out_width = out_width,
          .kernel_height = w.kernel_height,
          .kernel_width = w.kernel_width,
          .stride_height = w.stride_height,
          .stride_width = w.stride_width,
          .padding_height = w.padding_height,
          .padding_width = w.padding_width,
          .dilation_height = w.dilation_height,
          .dilation_width = w.dilation_width};
}
}  // namespace

Value PoolOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 4);
  const Pool2dOptions& w = geometry_.window;
  const int64_t dilation_h = pool_kind_ == Kind::max ? w.dilation_height : 1;
  const int64_t dilation_w = pool_kind_ == Kind::max ? w.dilation_width : 1;
  const int64_t out_height = pool_output_size(x.data.size(1), w.kernel_height, w.stride_height,
                                              w.padding_height, dilation_h, geometry_.ceil_mode);
  const int64_t out_width = pool_output_size(x.data.size(2), w.kernel_width, w.stride_width, w.padding_width,
                                             dilation_w, geometry_.ceil_mode);
  QF_CHECK(out_height >= 1 && out_width >= 1, kind(), " ", name, ": a ", w.kernel_height, "x", w.kernel_width,
           " window does not fit the input ", x.data.shape());
  const PoolShape s = pool_shape(x, w, out_height, out_width);
  Value y{u8({s.batch, out_height, out_width, s.channels}), x.quant};
  uint8_t* out = y.data.data_as<uint8_t>();
  const uint8_t* in = x.data.data_as<uint8_t>();
  const AvgPoolOptions options{geometry_.count_include_pad, geometry_.divisor_override};
  if (pool_kind_ == Kind::max)
    (backend == Backend::reference ? reference::max_pool2d : fast::max_pool2d)(out, in, s);
  else if (backend == Backend::reference)
    reference::avg_pool2d(out, in, s, options, x.quant.zero_point);
  else
    fast::avg_pool2d(out, in, s, options, x.quant.zero_point);
  return y;
}

nlohmann::json PoolOp::save(TensorMap&, const std::string&) const {
  const Pool2dOptions& w = geometry_.window;
  nlohmann::json j{{"kernel", {w.kernel_height, w.kernel_width}},
                   {"stride", {w.stride_height, w.stride_width}},
                   {"padding", {w.padding_height, w.padding_width}},
                   {"ceil_mode", geometry_.ceil_mode}};
  if (pool_kind_ == Kind::max) j["dilation"] = {w.dilation_height, w.dilation_width};
  if (pool_kind_ == Kind::average) {
    j["count_include_pad"] = geometry_.count_include_pad;
    j["divisor_override"] = geometry_.divisor_override;
  }
  return j;
}

Value AdaptiveAvgPoolOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 4);
  const PoolShape s = pool_shape(x, Pool2dOptions::square(1), out_height_, out_width_);
  Value y{u8({s.batch, out_height_, out_width_, s.channels}), x.quant};
  if (backend == Backend::reference)
    reference::adaptive_avg_pool2d(y.data.data_as<uint8_t>(), x.data.data_as<uint8_t>(), s,
                                   x.quant.zero_point);
  else
    fast::adaptive_avg_pool2d(y.data.data_as<uint8_t>(), x.data.data_as<uint8_t>(), s, x.quant.zero_point);
  return y;
}

nlohmann::json AdaptiveAvgPoolOp::save(TensorMap&, const std::string&) const {
  return {{"output_size", {out_height_, out_width_}}};
}

Value AddOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  QF_CHECK(inputs.size() == 2 && inputs[0]->is_quantized() && inputs[1]->is_quantized(), "add ", name,
           ": expected two uint8 inputs");
  const Value &a = *inputs[0], &b = *inputs[1];
  QF_CHECK(a.data.shape() == b.data.shape(), "add ", name, ": shapes ", a.data.shape(), " and ",
           b.data.shape(), " differ");
  Value y{u8(a.data.shape()), output_};
  (backend == Backend::reference ? reference::add : fast::add)(
      y.data.data_as<uint8_t>(), a.data.data_as<uint8_t>(), b.data.data_as<uint8_t>(), a.data.numel(),
      a.quant, b.quant, output_, has_relu_);
  return y;
}

nlohmann::json AddOp::save(TensorMap&, const std::string&) const {
  return {{"relu", has_relu_}, {"output", to_json(output_)}};
}

Value FlattenOp::run(const std::vector<const Value*>& inputs, Backend) const {
  const Value& x = only_input(inputs, *this);
  if (x.data.dim() <= 2) return x;
  return {x.data.view({x.data.size(0), -1}), x.quant};
}

// ---- float layers ------------------------------------------------------------------------------

FloatLayerOp::FloatLayerOp(Tensor weight, Tensor bias, bool has_relu,
                           std::optional<Conv2dOptions> conv_options)
    : weight_(std::move(weight)), bias_(std::move(bias)), has_relu_(has_relu), conv_options_(conv_options) {
  QF_CHECK(weight_.defined() && weight_.dtype() == DType::f32 && weight_.dim() == (conv_options_ ? 4 : 2),
           kind(), ": expected float weights of rank ", conv_options_ ? 4 : 2);
  QF_CHECK(!bias_.defined() || bias_.shape() == Shape({weight_.size(0)}), kind(), ": bias ", bias_.shape(),
           " does not match ", weight_.size(0), " outputs");
}

Value FloatLayerOp::run(const std::vector<const Value*>& inputs, Backend) const {
  const Value& x = only_input(inputs, *this);
  QF_CHECK(x.data.dtype() == DType::f32, kind(), " ", name, ": expected a float input");
  NoGradGuard no_grad;
  // Float layers are not integer ops: both backends run the float kernels the QAT
  // simulation ran, so the float island computes what training saw.
  Tensor y = conv_options_ ? conv2d(x.data, weight_, bias_, *conv_options_) : linear(x.data, weight_, bias_);
  return {has_relu_ ? relu(y) : y, {}};
}

nlohmann::json FloatLayerOp::save(TensorMap& blobs, const std::string& prefix) const {
  blobs[prefix + "weight"] = weight_;
  if (bias_.defined()) blobs[prefix + "bias"] = bias_;
  nlohmann::json j{{"relu", has_relu_}};
  if (conv_options_) {
    const Conv2dOptions& o = *conv_options_;
    j["stride"] = {o.stride_height, o.stride_width};
    j["padding"] = {o.padding_height, o.padding_width};
    j["dilation"] = {o.dilation_height, o.dilation_width};
    j["groups"] = o.groups;
  }
  return j;
}

}  // namespace qforge::quant::int8
