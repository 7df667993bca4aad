// load_op: an integer op from its .qfm header entry (Note [Model file]). Every key is read
// with its type and range checked (core/config_reader.h names the key in errors; unknown
// keys are errors too), every tensor against the shape the op implies.
#include <array>
#include <cmath>

#include "core/config_reader.h"
#include "quant/int8/lstm_ops.h"
#include "quant/int8/ops.h"

namespace qforge::quant::int8 {

namespace {

constexpr int64_t kMaxExtent = 1 << 16;  // any one dimension a model file may claim

int64_t extent(ConfigReader& r, const std::string& key, int64_t min_value = 1) {
  if (!r.has(key)) r.fail(key, "missing");
  const int64_t value = r.integer(key, 0, min_value);
  if (value > kMaxExtent)
    r.fail(key, "expected at most " + std::to_string(kMaxExtent) + ", got " + std::to_string(value));
  return value;
}

std::array<int64_t, 2> pair(ConfigReader& r, const std::string& key, int64_t min_value) {
  if (!r.has(key)) r.fail(key, "missing");
  const std::vector<double> values = r.numbers(key, {});
  if (values.size() != 2) r.fail(key, "expected two integers [h, w]");
  std::array<int64_t, 2> out{};
  for (int i = 0; i < 2; ++i) {
    if (!(values[i] >= static_cast<double>(min_value) && values[i] <= kMaxExtent &&
          values[i] == std::floor(values[i])))
      r.fail(key,
             "expected integers in [" + std::to_string(min_value) + ", " + std::to_string(kMaxExtent) + "]");
    out[i] = static_cast<int64_t>(values[i]);
  }
  return out;
}

ActivationQuant activation(ConfigReader r) {
  ActivationQuant q;
  q.scale = static_cast<float>(r.number("scale", 0));
  if (!(std::isfinite(q.scale) && q.scale > 0)) r.fail("scale", "expected a positive finite number");
  q.quant_min = static_cast<int32_t>(r.integer("quant_min", 0, 0));
  q.quant_max = static_cast<int32_t>(r.integer("quant_max", 255, 0));
  if (q.quant_max > 255 || q.quant_min >= q.quant_max)
    r.fail("quant_max", "expected 0 <= quant_min < quant_max <= 255");
  q.zero_point = static_cast<int32_t>(r.integer("zero_point", 0, q.quant_min));
  if (q.zero_point > q.quant_max) r.fail("zero_point", "expected a level within [quant_min, quant_max]");
  r.finish();
  return q;
}

Tensor blob(const TensorMap& own, const std::string& key, DType dtype, const Shape& shape,
            const std::string& where) {
  auto it = own.find(key);
  QF_CHECK(it != own.end(), where, ": tensor \"", key, "\" is missing");
  QF_CHECK(it->second.dtype() == dtype && it->second.shape() == shape, where, ": tensor \"", key, "\" is ",
           dtype_name(it->second.dtype()), " ", it->second.shape(), ", expected ", dtype_name(dtype), " ",
           shape);
  return it->second;
}

// Note [Packed weights] (ops.h), read back: every code within the range, unused bits zero.
Tensor unpack_weight(const TensorMap& own, const Shape& shape, const WeightRange& range, int bits,
                     const std::string& where) {
  int64_t n = 1;  // header extents are each ≤ 2^16: bound the product before using it
  for (int64_t e : shape) {
    QF_CHECK(n <= (int64_t{1} << 40) / e, where, ": weight shape ", shape, " is too large");
    n *= e;
  }
  const int64_t levels = range.quant_max - range.quant_min + 1;
  const Tensor packed = blob(own, "weight", DType::u8, {(n * bits + 7) / 8}, where);
  const uint8_t* in = packed.data_as<uint8_t>();
  Tensor weight = Tensor::empty(shape, DType::s8);
  int8_t* w = weight.data_as<int8_t>();
  const int mask = (1 << bits) - 1;
  for (int64_t k = 0; k < n; ++k) {
    const int code = (in[k * bits / 8] >> (k * bits % 8)) & mask;
    QF_CHECK(code < levels, where, ": packed weight ", k, " has code ", code, ", outside the ", levels,
             " levels of weight_range");
    w[k] = static_cast<int8_t>(range.quant_min + code);
  }
  QF_CHECK((n * bits) % 8 == 0 || (in[packed.size(0) - 1] >> ((n * bits) % 8)) == 0, where,
           ": the packed weight's unused bits are not zero");
  return weight;
}

LayerQuantization layer_quantization(ConfigReader& r, const TensorMap& own, const Shape& weight_shape,
                                     const std::string& where) {
  LayerQuantization layer;
  const int64_t out_channels = weight_shape[0];
  const std::array<int64_t, 2> range = pair(r, "weight_range", -128);
  if (range[1] > 127 || range[0] >= range[1]) r.fail("weight_range", "expected -128 <= min < max <= 127");
  layer.weight_range = {static_cast<int32_t>(range[0]), static_cast<int32_t>(range[1])};
  if (r.has("packed_weight")) {
    ConfigReader packing = r.object("packed_weight");
    const int64_t bits = packing.integer("bits", 0, 1);
    if (bits != 1 && bits != 2 && bits != 4) packing.fail("bits", "expected 1, 2 or 4");
    packing.finish();
    if (range[1] - range[0] + 1 > (int64_t{1} << bits))
      packing.fail("bits", std::to_string(bits) + " bits cannot hold the " +
                               std::to_string(range[1] - range[0] + 1) + " levels of weight_range");
    layer.weight = unpack_weight(own, weight_shape, layer.weight_range, static_cast<int>(bits), where);
  } else {
    layer.weight = blob(own, "weight", DType::s8, weight_shape, where);
  }
  layer.weight_scale = blob(own, "weight_scale", DType::f32, {out_channels}, where).to_vector();
  if (own.count("bias")) layer.bias = blob(own, "bias", DType::f32, {out_channels}, where).to_vector();
  layer.has_relu = r.boolean("relu", false);
  layer.input = activation(r.object("input"));
  if (!r.raw("output").is_null()) layer.output = activation(r.object("output"));
  return layer;
}

// A dynamically quantized product: int8 weights (n, k), their scales, an optional bias.
DynamicLinear dynamic_linear(const TensorMap& own, const std::string& prefix, int64_t n, int64_t k,
                             bool has_relu, const std::string& where, std::size_t& tensors) {
  Tensor weight = blob(own, prefix + "weight", DType::s8, {n, k}, where);
  std::vector<float> scale = blob(own, prefix + "weight_scale", DType::f32, {n}, where).to_vector(), bias;
  if (own.count(prefix + "bias"))
    bias = blob(own, prefix + "bias", DType::f32, {n}, where).to_vector(), ++tensors;
  tensors += 2;
  return DynamicLinear(weight, scale, bias, has_relu);
}

// "l<index>." — built by append: GCC 12's -Wrestrict misfires on "l" + std::to_string(i) (bug 105329).
std::string layer_prefix(std::size_t index) {
  std::string prefix = "l";
  prefix.append(std::to_string(index)).push_back('.');
  return prefix;
}

// The recurrent and dynamic kinds (quant/int8/lstm_ops.h).
std::unique_ptr<IntegerOp> load_recurrent_op(const std::string& kind, ConfigReader& r, const TensorMap& own,
                                             const std::string& where, std::size_t& tensors) {
  if (kind == "dynamic_linear") {
    const int64_t in = extent(r, "in_features"), out = extent(r, "out_features");
    return std::make_unique<DynamicLinearOp>(
        dynamic_linear(own, "", out, in, r.boolean("relu", false), where, tensors));
  }
  const int64_t input_size = extent(r, "input_size"), hidden = extent(r, "hidden_size");
  if (kind == "dynamic_lstm") {
    const int64_t count = extent(r, "layers");
    if (count > 64) r.fail("layers", "expected at most 64 layers");
    std::vector<DynamicLstmLayer> layers;
    for (int64_t l = 0; l < count; ++l) {
      const std::string p = layer_prefix(l);
      DynamicLinear ih =
          dynamic_linear(own, p + "ih.", 4 * hidden, l == 0 ? input_size : hidden, false, where, tensors);
      DynamicLinear hh = dynamic_linear(own, p + "hh.", 4 * hidden, hidden, false, where, tensors);
      layers.push_back({std::move(ih), std::move(hh)});
    }
    return std::make_unique<DynamicLstmOp>(std::move(layers));
  }
  const nlohmann::json& list = r.raw("layers");
  if (!list.is_array() || list.empty() || list.size() > 64)
    r.fail("layers", "expected a list of 1..64 layers");
  std::vector<StaticLstmLayer> layers;
  for (std::size_t l = 0; l < list.size(); ++l) {
    ConfigReader layer_reader(list[l], r.file(), r.key_path("layers." + std::to_string(l)));
    const std::string p = layer_prefix(l);
    StaticLstmLayer layer;
    const std::array<int64_t, 2> range = pair(layer_reader, "weight_range", -128);
    if (range[1] > 127 || range[0] >= range[1])
      layer_reader.fail("weight_range", "expected -128 <= min < max <= 127");
    layer.gates = activation(layer_reader.object("gates"));
    layer.state = activation(layer_reader.object("hidden"));
    for (const bool is_input : {true, false}) {
      const std::string base = p + (is_input ? "ih." : "hh.");
      LayerQuantization q;
      q.weight = blob(own, base + "weight", DType::s8, {4 * hidden, is_input && l == 0 ? input_size : hidden},
                      where);
      q.weight_scale = blob(own, base + "weight_scale", DType::f32, {4 * hidden}, where).to_vector();
      if (own.count(base + "bias"))
        q.bias = blob(own, base + "bias", DType::f32, {4 * hidden}, where).to_vector(), ++tensors;
      tensors += 2;
      q.weight_range = {static_cast<int32_t>(range[0]), static_cast<int32_t>(range[1])};
      q.input = is_input ? activation(layer_reader.object("input")) : layer.state;
      (is_input ? layer.input : layer.hidden) = std::move(q);
    }
    layer_reader.finish();
    layers.push_back(std::move(layer));
  }
  return std::make_unique<StaticLstmOp>(std::move(layers));
}

}  // namespace

std::unique_ptr<IntegerOp> load_op(const nlohmann::json& entry, const TensorMap& own, const std::string& file,
                                   const std::string& where) {
  if (!entry.is_object()) QF_FAIL(file, ": ", where, ": expected an object");
  ConfigReader r(entry, file, where);
  r.raw("name"), r.raw("inputs");
  const std::string kind = r.choice("op", "",
                                    {"quantize", "dequantize", "conv2d", "linear", "relu", "max_pool2d",
                                     "avg_pool2d", "adaptive_avg_pool2d", "add", "flatten", "float_conv2d",
                                     "float_linear", "dynamic_linear", "dynamic_lstm", "lstm"});
  const std::string context = file + ": " + where;
  std::unique_ptr<IntegerOp> op;
  std::size_t tensors = 0;
  if (kind == "quantize") {
    const ActivationQuant output = activation(r.object("output"));
    op = std::make_unique<QuantizeOp>(output, r.boolean("channels_last", true));
  } else if (kind == "dequantize") {
    op = std::make_unique<DequantizeOp>();
  } else if (kind == "conv2d") {
    const std::vector<double> in = r.numbers("in_shape", {});
    if (in.size() != 3) r.fail("in_shape", "expected [C, H, W]");
    for (double e : in)  // checked before the casts below: a double past int64's range is UB
      if (!(e >= 1 && e <= kMaxExtent && e == std::floor(e)))
        r.fail("in_shape", "expected positive integers");
    Conv2dShape s{.batch = 0,
                  .in_channels = static_cast<int64_t>(in[0]),
                  .in_height = static_cast<int64_t>(in[1]),
                  .in_width = static_cast<int64_t>(in[2]),
                  .out_channels = extent(r, "out_channels")};
    auto kernel = pair(r, "kernel", 1), stride = pair(r, "stride", 1), padding = pair(r, "padding", 0),
         dilation = pair(r, "dilation", 1);
    s.kernel_height = kernel[0], s.kernel_width = kernel[1], s.stride_height = stride[0],
    s.stride_width = stride[1];
    s.padding_height = padding[0], s.padding_width = padding[1], s.dilation_height = dilation[0],
    s.dilation_width = dilation[1];
    s.groups = extent(r, "groups");
    if (s.in_channels % s.groups || s.out_channels % s.groups)
      r.fail("groups", "must divide the channel counts");
    LayerQuantization layer = layer_quantization(
        r, own, {s.out_channels, s.in_channels / s.groups, s.kernel_height, s.kernel_width}, context);
    tensors = 2 + !layer.bias.empty();
    op = std::make_unique<ConvOp>(std::move(layer), s);
  } else if (kind == "linear") {
    const int64_t in_features = extent(r, "in_features"), out_features = extent(r, "out_features");
    LayerQuantization layer = layer_quantization(r, own, {out_features, in_features}, context);
    tensors = 2 + !layer.bias.empty();
    op = std::make_unique<LinearOp>(std::move(layer));
  } else if (kind == "relu") {
    op = std::make_unique<ReluOp>();
  } else if (kind == "max_pool2d" || kind == "avg_pool2d") {
    PoolGeometry g;
    auto kernel = pair(r, "kernel", 1), stride = pair(r, "stride", 1), padding = pair(r, "padding", 0);
    g.window = Pool2dOptions{kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]};
    if (padding[0] * 2 > kernel[0] || padding[1] * 2 > kernel[1])
      r.fail("padding", "must be at most half the kernel");
    g.ceil_mode = r.boolean("ceil_mode", false);
    if (kind == "max_pool2d") {
      auto dilation = pair(r, "dilation", 1);
      g.window.dilation_height = dilation[0], g.window.dilation_width = dilation[1];
      op = std::make_unique<PoolOp>(PoolOp::Kind::max, g);
    } else {
      g.count_include_pad = r.boolean("count_include_pad", true);
      g.divisor_override = r.integer("divisor_override", 0, 0);
      op = std::make_unique<PoolOp>(PoolOp::Kind::average, g);
    }
  } else if (kind == "adaptive_avg_pool2d") {
    auto size = pair(r, "output_size", 1);
    op = std::make_unique<AdaptiveAvgPoolOp>(size[0], size[1]);
  } else if (kind == "add") {
    const bool has_relu = r.boolean("relu", false);
    op = std::make_unique<AddOp>(activation(r.object("output")), has_relu);
  } else if (kind == "flatten") {
    op = std::make_unique<FlattenOp>();
  } else if (kind == "dynamic_linear" || kind == "dynamic_lstm" || kind == "lstm") {
    op = load_recurrent_op(kind, r, own, context, tensors);
  } else {  // float_conv2d, float_linear
    const bool is_conv = kind == "float_conv2d";
    auto it = own.find("weight");
    QF_CHECK(it != own.end() && it->second.dtype() == DType::f32 && it->second.dim() == (is_conv ? 4 : 2),
             context, ": tensor \"weight\" missing or not float of rank ", is_conv ? 4 : 2);
    Tensor bias;
    if (own.count("bias")) bias = blob(own, "bias", DType::f32, {it->second.size(0)}, context);
    std::optional<Conv2dOptions> options;
    if (is_conv) {
      auto stride = pair(r, "stride", 1), padding = pair(r, "padding", 0), dilation = pair(r, "dilation", 1);
      options = Conv2dOptions{stride[0],   stride[1],   padding[0],         padding[1],
                              dilation[0], dilation[1], extent(r, "groups")};
    }
    tensors = 1 + bias.defined();
    op = std::make_unique<FloatLayerOp>(it->second, bias, r.boolean("relu", false), options);
  }
  QF_CHECK(own.size() == tensors, context, ": ", own.size(), " tensors stored for an op that takes ",
           tensors);
  r.finish();
  return op;
}

}  // namespace qforge::quant::int8
