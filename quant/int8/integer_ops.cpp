// The ops with weights or a change of representation: quantize, dequantize, conv2d, linear
// and the layers kept in float — run, infer, and their .qfm entry both ways.
#include "quant/int8/integer_ops.h"

#include <cmath>
#include <sstream>

#include "core/autograd.h"
#include "core/ops.h"
#include "quant/int8/op_fields.h"

namespace qforge::quant::int8 {

// ---- the checks every op shares ----------------------------------------------------------------

std::string describe(const ValueType& type) {
  std::ostringstream out;
  out << (type.is_quantized ? "uint8 " : "float ") << shape_to_string(type.shape);
  if (type.is_quantized)
    out << " (scale " << type.quant.scale << ", zero point " << type.quant.zero_point << ", levels "
        << type.quant.quant_min << ".." << type.quant.quant_max << ")";
  return out.str();
}

bool same_quantization(const ActivationQuant& a, const ActivationQuant& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point && a.quant_min == b.quant_min &&
         a.quant_max == b.quant_max;
}

namespace {
const ValueType& one_input(const std::vector<const ValueType*>& inputs) {
  QF_CHECK(inputs.size() == 1, "expected one input, got ", inputs.size());
  return *inputs[0];
}
}  // namespace

const ValueType& expect_quantized(const std::vector<const ValueType*>& inputs, int64_t rank,
                                  const ActivationQuant* expected) {
  const ValueType& x = one_input(inputs);
  QF_CHECK(x.is_quantized && (rank == 0 || static_cast<int64_t>(x.shape.size()) == rank), "expected a uint8 ",
           rank == 3   ? "image (H,W,C)"
           : rank == 1 ? "feature vector"
                       : "value",
           ", got ", describe(x));
  if (expected)
    QF_CHECK(same_quantization(x.quant, *expected), "it was converted for input scale ", expected->scale,
             ", zero point ", expected->zero_point, ", levels ", expected->quant_min, "..",
             expected->quant_max, "; its input is ", describe(x));
  return x;
}

const ValueType& expect_float(const std::vector<const ValueType*>& inputs, int64_t rank) {
  const ValueType& x = one_input(inputs);
  QF_CHECK(!x.is_quantized && (rank == 0 || static_cast<int64_t>(x.shape.size()) == rank),
           "expected a float ", rank == 3 ? "image (C,H,W)" : "value", ", got ", describe(x));
  return x;
}

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

namespace {

void check_input_quant(const Value& x, const ActivationQuant& expected, const IntegerOp& op) {
  QF_CHECK(same_quantization(x.quant, expected), op.kind(), " ", op.name, ": input quantized with scale ",
           x.quant.scale, ", zero point ", x.quant.zero_point, "; the layer was converted for scale ",
           expected.scale, ", zero point ", expected.zero_point);
}

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
  OutputStage stage =
      layer.output
          ? make_requantization(layer.input, layer.weight_scale, layer.bias, *layer.output, layer.has_relu)
          : make_dequantization(layer.input, layer.weight_scale, layer.bias, layer.has_relu);
  // Finite scales can still multiply into infinities (a tiny output scale): such a layer
  // would compute garbage, so it is no layer.
  for (float m : stage.multiplier)
    QF_CHECK(std::isfinite(m) && m > 0, "the scales multiply into a requantization factor of ", m);
  for (float b : stage.bias) QF_CHECK(std::isfinite(b), "the scaled bias ", b, " is not finite");
  return stage;
}

void check_layer(const LayerQuantization& layer, int64_t out_channels, const std::string& what) {
  QF_CHECK(layer.weight.defined() && layer.weight.dtype() == DType::s8, what, ": weights must be int8");
  QF_CHECK(static_cast<int64_t>(layer.weight_scale.size()) == out_channels, what, ": ",
           layer.weight_scale.size(), " weight scales for ", out_channels, " output channels");
  QF_CHECK(layer.bias.empty() || static_cast<int64_t>(layer.bias.size()) == out_channels, what, ": ",
           layer.bias.size(), " biases for ", out_channels, " output channels");
  for (float s : layer.weight_scale)
    QF_CHECK(std::isfinite(s) && s >= kMinScale, what, ": weight scale ", s,
             " is not a finite scale >= 1.19e-07 (FLT_EPSILON)");
  for (float b : layer.bias) QF_CHECK(std::isfinite(b), what, ": bias ", b, " is not finite");
  const int8_t* w = layer.weight.data_as<int8_t>();
  const WeightRange& range = layer.weight_range;
  for (int64_t i = 0; i < layer.weight.numel(); ++i) {
    QF_CHECK(w[i] >= range.quant_min && w[i] <= range.quant_max, what, ": weight ", int{w[i]},
             " outside its range [", range.quant_min, ", ", range.quant_max, "]");
    QF_CHECK(!range.is_binary || w[i] == range.quant_min || w[i] == range.quant_max, what, ": binary weight ",
             int{w[i]}, " is neither ", range.quant_min, " nor ", range.quant_max);
  }
}

Tensor tensor_of(const std::vector<float>& v) {
  return Tensor::from_vector({static_cast<int64_t>(v.size())}, v);
}

}  // namespace

// ---- conv2d / linear fields --------------------------------------------------------------------

nlohmann::json save_layer(TensorMap& blobs, const std::string& prefix, const LayerQuantization& layer) {
  const WeightRange& range = layer.weight_range;
  nlohmann::json entry = {{"relu", layer.has_relu},
                          {"input", to_json(layer.input)},
                          {"weight_range", {range.quant_min, range.quant_max}},
                          {"bias", !layer.bias.empty()},
                          {"output", layer.output ? to_json(*layer.output) : nlohmann::json()}};
  if (range.is_binary) entry["binary"] = true;
  if (const int bits = packed_weight_bits(range.levels())) {
    blobs[prefix + "weight"] = pack_weight(layer.weight, range, bits);
    entry["packed_weight"] = {{"bits", bits}};
  } else {
    blobs[prefix + "weight"] = layer.weight;
  }
  blobs[prefix + "weight_scale"] = tensor_of(layer.weight_scale);
  if (!layer.bias.empty()) blobs[prefix + "bias"] = tensor_of(layer.bias);
  return entry;
}

LayerQuantization load_layer(OpReader& reader, const Shape& weight_shape) {
  ConfigReader& r = reader.fields();
  LayerQuantization layer;
  const int64_t out_channels = weight_shape[0];
  const std::array<int64_t, 2> range = reader.pair("weight_range", -128);
  if (range[1] > 127 || range[0] >= range[1]) r.fail("weight_range", "expected -128 <= min < max <= 127");
  layer.weight_range = {static_cast<int32_t>(range[0]), static_cast<int32_t>(range[1]),
                        r.boolean("binary", false)};
  if (layer.weight_range.is_binary && (range[0] != -1 || range[1] != 1))
    r.fail("weight_range", "binary weights have the range [-1, 1]");
  int64_t n = 1;  // header extents are each <= 2^16: bound the product before using it
  for (int64_t e : weight_shape) {
    QF_CHECK(n <= (int64_t{1} << 40) / e, reader.context(), ": weight shape ", weight_shape, " is too large");
    n *= e;
  }
  if (r.has("packed_weight")) {
    ConfigReader packing = r.object("packed_weight");
    const int64_t bits = packing.integer("bits", 0, 1);
    if (bits != 1 && bits != 2 && bits != 4) packing.fail("bits", "expected 1, 2 or 4");
    packing.finish();
    if (layer.weight_range.levels() > (int64_t{1} << bits))
      packing.fail("bits", std::to_string(bits) + " bits cannot hold the " +
                               std::to_string(layer.weight_range.levels()) + " levels of weight_range");
    const Tensor packed = reader.tensor("weight", DType::u8, {(n * bits + 7) / 8});
    layer.weight =
        unpack_weight(packed, weight_shape, layer.weight_range, static_cast<int>(bits), reader.context());
  } else {
    layer.weight = reader.tensor("weight", DType::s8, weight_shape);
  }
  layer.weight_scale = reader.tensor("weight_scale", DType::f32, {out_channels}).to_vector();
  if (reader.flag("bias")) layer.bias = reader.tensor("bias", DType::f32, {out_channels}).to_vector();
  layer.has_relu = r.boolean("relu", false);
  layer.input = reader.activation("input");
  if (!r.raw("output").is_null()) layer.output = reader.activation("output");
  return layer;
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

ValueType QuantizeOp::infer(const std::vector<const ValueType*>& inputs) const {
  const ValueType& x = expect_float(inputs);
  ValueType y{true, output_, x.shape};
  if (x.shape.size() == 3 && channels_last_) y.shape = {x.shape[1], x.shape[2], x.shape[0]};
  return y;
}

nlohmann::json QuantizeOp::save(TensorMap&, const std::string&) const {
  return {{"output", to_json(output_)}, {"channels_last", channels_last_}};
}

std::unique_ptr<IntegerOp> QuantizeOp::load(OpReader& reader) {
  const ActivationQuant output = reader.activation("output");
  return std::make_unique<QuantizeOp>(output, reader.fields().boolean("channels_last", true));
}

Value DequantizeOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 0);
  Tensor y = Tensor::empty(x.data.shape());
  (backend == Backend::reference ? reference::dequantize : fast::dequantize)(
      y.data(), x.data.data_as<uint8_t>(), y.numel(), x.quant);
  return {y.dim() == 4 ? nhwc_to_nchw<float>(y) : y, {}};
}

ValueType DequantizeOp::infer(const std::vector<const ValueType*>& inputs) const {
  const ValueType& x = expect_quantized(inputs);
  ValueType y{false, {}, x.shape};
  if (x.shape.size() == 3) y.shape = {x.shape[2], x.shape[0], x.shape[1]};
  return y;
}

std::unique_ptr<IntegerOp> DequantizeOp::load(OpReader&) { return std::make_unique<DequantizeOp>(); }

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

ValueType ConvOp::infer(const std::vector<const ValueType*>& inputs) const {
  const ValueType& x = expect_quantized(inputs, 3, &layer_.input);
  const Shape expected{shape_.in_height, shape_.in_width, shape_.in_channels};
  QF_CHECK(x.shape == expected, "it was built for (H,W,C) input ", expected, ", its input is ", describe(x));
  if (layer_.output)
    return {true, *layer_.output, {shape_.out_height(), shape_.out_width(), shape_.out_channels}};
  return {false, {}, {shape_.out_channels, shape_.out_height(), shape_.out_width()}};
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

std::unique_ptr<IntegerOp> ConvOp::load(OpReader& reader) {
  ConfigReader& r = reader.fields();
  const std::vector<double> in = r.numbers("in_shape", {});
  if (in.size() != 3) r.fail("in_shape", "expected [C, H, W]");
  for (double e : in)  // checked before the casts below: a double past int64's range is UB
    if (!(e >= 1 && e <= (1 << 16) && e == std::floor(e))) r.fail("in_shape", "expected positive integers");
  Conv2dShape s{.batch = 0,
                .in_channels = static_cast<int64_t>(in[0]),
                .in_height = static_cast<int64_t>(in[1]),
                .in_width = static_cast<int64_t>(in[2]),
                .out_channels = reader.extent("out_channels")};
  const auto kernel = reader.pair("kernel", 1), stride = reader.pair("stride", 1),
             padding = reader.pair("padding", 0), dilation = reader.pair("dilation", 1);
  s.kernel_height = kernel[0], s.kernel_width = kernel[1], s.stride_height = stride[0],
  s.stride_width = stride[1];
  s.padding_height = padding[0], s.padding_width = padding[1], s.dilation_height = dilation[0],
  s.dilation_width = dilation[1];
  s.groups = reader.extent("groups");
  if (s.in_channels % s.groups || s.out_channels % s.groups)
    r.fail("groups", "must divide the channel counts");
  LayerQuantization layer =
      load_layer(reader, {s.out_channels, s.in_channels / s.groups, s.kernel_height, s.kernel_width});
  return std::make_unique<ConvOp>(std::move(layer), s);
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

ValueType LinearOp::infer(const std::vector<const ValueType*>& inputs) const {
  const ValueType& x = expect_quantized(inputs, 0, &layer_.input);
  const int64_t k = layer_.weight.size(1);
  QF_CHECK(!x.shape.empty() && x.shape.back() == k, "it was built for ", k, " input features, its input is ",
           describe(x));
  Shape out = x.shape;
  out.back() = layer_.weight.size(0);
  return layer_.output ? ValueType{true, *layer_.output, out} : ValueType{false, {}, out};
}

nlohmann::json LinearOp::save(TensorMap& blobs, const std::string& prefix) const {
  nlohmann::json entry = save_layer(blobs, prefix, layer_);
  entry.update({{"in_features", layer_.weight.size(1)}, {"out_features", layer_.weight.size(0)}});
  return entry;
}

std::unique_ptr<IntegerOp> LinearOp::load(OpReader& reader) {
  const int64_t in_features = reader.extent("in_features"), out_features = reader.extent("out_features");
  return std::make_unique<LinearOp>(load_layer(reader, {out_features, in_features}));
}

// ---- float layers ------------------------------------------------------------------------------

FloatLayerOp::FloatLayerOp(Tensor weight, Tensor bias, bool has_relu,
                           std::optional<Conv2dOptions> conv_options)
    : weight_(std::move(weight)), bias_(std::move(bias)), has_relu_(has_relu), conv_options_(conv_options) {
  QF_CHECK(weight_.defined() && weight_.dtype() == DType::f32 && weight_.dim() == (conv_options_ ? 4 : 2),
           kind(), ": expected float weights of rank ", conv_options_ ? 4 : 2);
  QF_CHECK(!bias_.defined() || bias_.shape() == Shape({weight_.size(0)}), kind(), ": bias ", bias_.shape(),
           " does not match ", weight_.size(0), " outputs");
  for (const Tensor* t : {&weight_, &bias_})
    for (int64_t i = 0; t->defined() && i < t->numel(); ++i)
      QF_CHECK(std::isfinite(t->data()[i]), kind(), ": ", t == &weight_ ? "weight " : "bias ", i, " is ",
               t->data()[i]);
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

ValueType FloatLayerOp::infer(const std::vector<const ValueType*>& inputs) const {
  if (!conv_options_) {
    const ValueType& x = expect_float(inputs);
    QF_CHECK(!x.shape.empty() && x.shape.back() == weight_.size(1), "it was built for ", weight_.size(1),
             " input features, its input is ", describe(x));
    Shape out = x.shape;
    out.back() = weight_.size(0);
    return {false, {}, out};
  }
  const ValueType& x = expect_float(inputs, 3);
  const Conv2dOptions& o = *conv_options_;
  QF_CHECK(x.shape[0] == weight_.size(1) * o.groups, "it was built for ", weight_.size(1) * o.groups,
           " input channels, its input is ", describe(x));
  Conv2dShape s{.in_channels = x.shape[0],
                .in_height = x.shape[1],
                .in_width = x.shape[2],
                .out_channels = weight_.size(0),
                .kernel_height = weight_.size(2),
                .kernel_width = weight_.size(3),
                .stride_height = o.stride_height,
                .stride_width = o.stride_width,
                .padding_height = o.padding_height,
                .padding_width = o.padding_width,
                .dilation_height = o.dilation_height,
                .dilation_width = o.dilation_width,
                .groups = o.groups};
  QF_CHECK(s.out_height() >= 1 && s.out_width() >= 1, "its kernel does not fit the input ", describe(x));
  return {false, {}, {s.out_channels, s.out_height(), s.out_width()}};
}

nlohmann::json FloatLayerOp::save(TensorMap& blobs, const std::string& prefix) const {
  blobs[prefix + "weight"] = weight_;
  if (bias_.defined()) blobs[prefix + "bias"] = bias_;
  nlohmann::json j{{"relu", has_relu_}, {"bias", bias_.defined()}};
  if (conv_options_) {
    const Conv2dOptions& o = *conv_options_;
    j["stride"] = {o.stride_height, o.stride_width};
    j["padding"] = {o.padding_height, o.padding_width};
    j["dilation"] = {o.dilation_height, o.dilation_width};
    j["groups"] = o.groups;
  }
  return j;
}

std::unique_ptr<IntegerOp> FloatLayerOp::load(OpReader& reader) {
  const bool is_conv = reader.kind() == kConvKind;
  const Tensor weight = reader.float_tensor("weight", is_conv ? 4 : 2);
  Tensor bias;
  if (reader.flag("bias")) bias = reader.tensor("bias", DType::f32, {weight.size(0)});
  std::optional<Conv2dOptions> options;
  if (is_conv) {
    const auto stride = reader.pair("stride", 1), padding = reader.pair("padding", 0),
               dilation = reader.pair("dilation", 1);
    options = Conv2dOptions{
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], reader.extent("groups")};
  }
  return std::make_unique<FloatLayerOp>(weight, bias, reader.fields().boolean("relu", false), options);
}

}  // namespace qforge::quant::int8
