// The ops without weights: relu, max/average/adaptive pools, add, flatten — run, infer,
// and their .qfm entry both ways. Each keeps its input's quantization but add, which
// requantizes to its own.
#include "quant/int8/integer_ops.h"
#include "quant/int8/op_fields.h"

namespace qforge::quant::int8 {

Value ReluOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 0);
  Value y{u8(x.data.shape()), x.quant};
  (backend == Backend::reference ? reference::relu : fast::relu)(
      y.data.data_as<uint8_t>(), x.data.data_as<uint8_t>(), x.data.numel(), x.quant.zero_point);
  return y;
}

ValueType ReluOp::infer(const std::vector<const ValueType*>& inputs) const {
  return expect_quantized(inputs);
}

std::unique_ptr<IntegerOp> ReluOp::load(OpReader&) { return std::make_unique<ReluOp>(); }

// ---- pools ---------------------------------------------------------------------------------------

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

std::pair<int64_t, int64_t> PoolOp::output_size(int64_t height, int64_t width) const {
  const Pool2dOptions& w = geometry_.window;
  const int64_t dilation_h = pool_kind_ == Kind::max ? w.dilation_height : 1;
  const int64_t dilation_w = pool_kind_ == Kind::max ? w.dilation_width : 1;
  return {pool_output_size(height, w.kernel_height, w.stride_height, w.padding_height, dilation_h,
                           geometry_.ceil_mode),
          pool_output_size(width, w.kernel_width, w.stride_width, w.padding_width, dilation_w,
                           geometry_.ceil_mode)};
}

Value PoolOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  const Value& x = quantized_input(inputs, *this, 4);
  const Pool2dOptions& w = geometry_.window;
  const auto [out_height, out_width] = output_size(x.data.size(1), x.data.size(2));
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

ValueType PoolOp::infer(const std::vector<const ValueType*>& inputs) const {
  const ValueType& x = expect_quantized(inputs, 3);
  const auto [out_height, out_width] = output_size(x.shape[0], x.shape[1]);
  QF_CHECK(out_height >= 1 && out_width >= 1, "a ", geometry_.window.kernel_height, "x",
           geometry_.window.kernel_width, " window does not fit its input ", describe(x));
  return {true, x.quant, {out_height, out_width, x.shape[2]}};
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

std::unique_ptr<IntegerOp> PoolOp::load(OpReader& reader) {
  ConfigReader& r = reader.fields();
  PoolGeometry g;
  const auto kernel = reader.pair("kernel", 1), stride = reader.pair("stride", 1),
             padding = reader.pair("padding", 0);
  g.window = Pool2dOptions{kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]};
  if (padding[0] * 2 > kernel[0] || padding[1] * 2 > kernel[1])
    r.fail("padding", "must be at most half the kernel");
  g.ceil_mode = r.boolean("ceil_mode", false);
  if (reader.kind() == kMaxKind) {
    const auto dilation = reader.pair("dilation", 1);
    g.window.dilation_height = dilation[0], g.window.dilation_width = dilation[1];
    return std::make_unique<PoolOp>(Kind::max, g);
  }
  g.count_include_pad = r.boolean("count_include_pad", true);
  g.divisor_override = r.integer("divisor_override", 0, 0);
  return std::make_unique<PoolOp>(Kind::average, g);
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

ValueType AdaptiveAvgPoolOp::infer(const std::vector<const ValueType*>& inputs) const {
  const ValueType& x = expect_quantized(inputs, 3);
  return {true, x.quant, {out_height_, out_width_, x.shape[2]}};
}

nlohmann::json AdaptiveAvgPoolOp::save(TensorMap&, const std::string&) const {
  return {{"output_size", {out_height_, out_width_}}};
}

std::unique_ptr<IntegerOp> AdaptiveAvgPoolOp::load(OpReader& reader) {
  const auto size = reader.pair("output_size", 1);
  return std::make_unique<AdaptiveAvgPoolOp>(size[0], size[1]);
}

// ---- add, flatten --------------------------------------------------------------------------------

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

ValueType AddOp::infer(const std::vector<const ValueType*>& inputs) const {
  QF_CHECK(inputs.size() == 2, "expected two inputs, got ", inputs.size());
  const ValueType &a = *inputs[0], &b = *inputs[1];
  QF_CHECK(a.is_quantized && b.is_quantized && a.shape == b.shape,
           "expected two uint8 values of one shape, got ", describe(a), " and ", describe(b));
  return {true, output_, a.shape};
}

nlohmann::json AddOp::save(TensorMap&, const std::string&) const {
  return {{"relu", has_relu_}, {"output", to_json(output_)}};
}

std::unique_ptr<IntegerOp> AddOp::load(OpReader& reader) {
  const bool has_relu = reader.fields().boolean("relu", false);
  return std::make_unique<AddOp>(reader.activation("output"), has_relu);
}

Value FlattenOp::run(const std::vector<const Value*>& inputs, Backend) const {
  const Value& x = only_input(inputs, *this);
  if (x.data.dim() <= 2) return x;
  return {x.data.view({x.data.size(0), -1}), x.quant};
}

ValueType FlattenOp::infer(const std::vector<const ValueType*>& inputs) const {
  QF_CHECK(inputs.size() == 1, "expected one input, got ", inputs.size());
  ValueType y = *inputs[0];
  int64_t features = 1;
  for (int64_t e : y.shape) features *= e;
  y.shape = {features};
  return y;
}

std::unique_ptr<IntegerOp> FlattenOp::load(OpReader&) { return std::make_unique<FlattenOp>(); }

}  // namespace qforge::quant::int8
