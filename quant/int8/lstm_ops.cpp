#include "quant/int8/lstm_ops.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/config_reader.h"
#include "core/ops/rnn.h"
#include "core/ops/shape.h"
#include "core/threading.h"
#include "quant/int8/op_fields.h"

namespace qforge::quant::int8 {

namespace {

constexpr float kSmallScale = 6.1e-5f;  // PyTorch's SMALL_SCALE_THRESHOLD (fp16's smallest normal)

Tensor float_tensor(const std::vector<float>& v) {
  return Tensor::from_vector({static_cast<int64_t>(v.size())}, v);
}

// The cell's pointwise step on float gates (N,4H) and c (N,H): core's lstm_cell, so the
// integer model runs exactly the simulation's arithmetic. Returns (N,2H) = [h | c].
Tensor cell(const Tensor& gates, const Tensor& c) {
  NoGradGuard no_grad;
  return lstm_cell(gates, c);
}

void save_product(TensorMap& blobs, const std::string& prefix, const Tensor& weight,
                  const std::vector<float>& scale, const std::vector<float>& bias) {
  blobs[prefix + "weight"] = weight;
  blobs[prefix + "weight_scale"] = float_tensor(scale);
  if (!bias.empty()) blobs[prefix + "bias"] = float_tensor(bias);
}

// A dynamically quantized product from its entry: int8 weights (n, k), their scales, a bias.
DynamicLinear load_product(OpReader& reader, const std::string& prefix, int64_t n, int64_t k, bool has_bias,
                           bool has_relu) {
  Tensor weight = reader.tensor(prefix + "weight", DType::s8, {n, k});
  std::vector<float> scale = reader.tensor(prefix + "weight_scale", DType::f32, {n}).to_vector(), bias;
  for (float s : scale)
    QF_CHECK(s >= kMinScale, reader.context(), ": ", prefix, "weight_scale ", s,
             " is below 1.19e-07 (FLT_EPSILON)");
  if (has_bias) bias = reader.tensor(prefix + "bias", DType::f32, {n}).to_vector();
  return DynamicLinear(weight, scale, bias, has_relu);
}

// "l<index>." — built by append: GCC 12's -Wrestrict misfires on "l" + std::to_string(i) (bug 105329).
std::string layer_prefix(std::size_t index) {
  std::string prefix = "l";
  prefix.append(std::to_string(index)).push_back('.');
  return prefix;
}

// An LSTM reads its input (N, ...) as N sequences of `input_size` features.
ValueType lstm_output(const ValueType& x, int64_t input_size, int64_t hidden) {
  int64_t n = 1;
  for (int64_t e : x.shape) n *= e;
  QF_CHECK(!x.shape.empty() && n % input_size == 0, "it reads sequences of ", input_size,
           " features, its input is ", describe(x));
  return {x.is_quantized, x.quant, {hidden}};
}

// (N, ...) read as N sequences of `features`: the step count.
int64_t steps_of(const Tensor& x, int64_t features, const std::string& op) {
  QF_CHECK(x.dim() >= 2 && x.size(0) >= 1 && x.numel() % (x.size(0) * features) == 0, op,
           ": cannot read input ", x.shape(), " as sequences of ", features, " features");
  return x.numel() / (x.size(0) * features);
}

}  // namespace

DynamicParams choose_dynamic_params(float min, float max, int32_t quant_min, int32_t quant_max) {
  QF_CHECK(min <= max, "dynamic quantization: min ", min, " above max ", max, " (NaN input?)");
  min = std::min(min, 0.0f), max = std::max(max, 0.0f);
  double scale = (static_cast<double>(max) - min) / (quant_max - quant_min);
  if (static_cast<float>(scale) == 0.0f || std::isinf(1.0f / static_cast<float>(scale))) scale = 0.1;
  if (scale < kSmallScale) {  // PyTorch widens tiny ranges so the reciprocal stays finite
    const float original = static_cast<float>(scale);
    scale = kSmallScale;
    if (min == 0.0f)
      max = kSmallScale * (quant_max - quant_min);
    else if (max == 0.0f)
      min = -kSmallScale * (quant_max - quant_min);
    else
      min *= kSmallScale / original, max *= kSmallScale / original;
  }
  // The zero point from whichever end adds the smaller terms (ChooseQuantizationParams).
  const double from_min = quant_min - min / scale, from_max = quant_max - max / scale;
  const double error_min = std::abs(quant_min) - std::abs(min / scale);
  const double error_max = std::abs(quant_max) - std::abs(max / scale);
  const double initial = error_min < error_max ? from_min : from_max;
  const int32_t zero_point = initial < quant_min   ? quant_min
                             : initial > quant_max ? quant_max
                                                   : static_cast<int32_t>(std::nearbyint(initial));
  return {scale, zero_point};
}

// ---- dynamic linear ---------------------------------------------------------------------------

DynamicLinear::DynamicLinear(Tensor weight, std::vector<float> weight_scale, std::vector<float> bias,
                             bool has_relu)
    : weight_(std::move(weight)),
      weight_scale_(std::move(weight_scale)),
      bias_(std::move(bias)),
      has_relu_(has_relu) {
  QF_CHECK(weight_.defined() && weight_.dtype() == DType::s8 && weight_.dim() == 2,
           "dynamic linear: expected int8 (N,K) weights");
  QF_CHECK(static_cast<int64_t>(weight_scale_.size()) == weight_.size(0) &&
               (bias_.empty() || static_cast<int64_t>(bias_.size()) == weight_.size(0)),
           "dynamic linear: ", weight_scale_.size(), " scales and ", bias_.size(), " biases for ",
           weight_.size(0), " outputs");
  for (float s : weight_scale_)
    QF_CHECK(std::isfinite(s) && s > 0, "dynamic linear: weight scale ", s, " is not positive");
  const ActivationQuant placeholder{1.0f, 0};  // the real input stage is chosen per call
  fast_ =
      std::make_unique<fast::LinearLayer>(weight_.data_as<int8_t>(), weight_.size(0), weight_.size(1), 0,
                                          make_dequantization(placeholder, weight_scale_, bias_, has_relu_));
}

namespace {
// The range dynamic quantization reads from x: min and max as plain compares (they
// vectorize; std::minmax_element does not), and a sum of x·0 that is NaN exactly when some
// x is NaN or infinite. Ranges of parts of x merge into the range of the whole, exactly.
struct ValueRange {
  float min = 0, max = 0, poison = 0;
};
ValueRange scan_range(const float* x, int64_t count) {
  ValueRange range;
  if (count > 0) range.min = range.max = x[0];
  for (int64_t i = 0; i < count; ++i) {
    range.min = x[i] < range.min ? x[i] : range.min;
    range.max = x[i] > range.max ? x[i] : range.max;
    range.poison += x[i] * 0.0f;
  }
  return range;
}
ValueRange merge(const ValueRange& a, const ValueRange& b) {
  return {std::min(a.min, b.min), std::max(a.max, b.max), a.poison + b.poison};
}
constexpr const char* kNotFinite = "dynamic quantization: the input holds NaN or infinity";

// q = x quantized with the parameters choose gave: dynamic_input's uint8 grid, through the
// float reciprocal of the double scale, as PyTorch's quantize_per_tensor.
void quantize_dynamic(uint8_t* q, const float* x, int64_t count, const DynamicParams& params) {
  const ActivationQuant input = dynamic_input(params);
  const float inverse_scale = static_cast<float>(1.0 / params.scale);
  for (int64_t i = 0; i < count; ++i) q[i] = quantize_one(x[i], inverse_scale, input);
}
}  // namespace

ActivationQuant dynamic_input(const DynamicParams& params) {
  return {static_cast<float>(params.scale), params.zero_point, 0, 255};
}

DynamicParams DynamicLinear::choose(const float* x, int64_t count) const {
  const ValueRange range = scan_range(x, count);
  QF_CHECK(range.poison == 0.0f, kNotFinite);
  return choose_dynamic_params(range.min, range.max);
}

void DynamicLinear::run(float* y, const float* x, int64_t m, Backend backend) const {
  const int64_t k = weight_.size(1);
  const DynamicParams params = choose(x, m * k);  // this call's parameters
  std::vector<uint8_t> q(m * k);
  quantize_dynamic(q.data(), x, m * k, params);
  run_quantized(y, q.data(), m, dynamic_input(params), backend);
}

FusedStage DynamicLinear::make_stage() const {
  const ActivationQuant placeholder{1.0f, 0};
  return {std::vector<int32_t>(weight_scale_.size(), 0),
          make_dequantization(placeholder, weight_scale_, bias_, has_relu_), FusedStage::Allow::float_output};
}

void DynamicLinear::set_input(FusedStage& stage, const ActivationQuant& input) const {
  const std::vector<int32_t>& sums = fast_->column_sums();
  for (std::size_t j = 0; j < weight_scale_.size(); ++j) {
    stage.stage.multiplier[j] = stage.multiplier[j] = input.scale * weight_scale_[j];
    stage.offsets[j] = input.zero_point * sums[j];
  }
}

void DynamicLinear::run_fast(float* y, const uint8_t* q, int64_t m, const FusedStage& stage) const {
  fast_->run(y, q, m, stage);
}

void DynamicLinear::run_quantized(float* y, const uint8_t* q, int64_t m, const ActivationQuant& input,
                                  Backend backend) const {
  const int64_t n = weight_.size(0), k = weight_.size(1);
  const OutputStage stage = make_dequantization(input, weight_scale_, bias_, has_relu_);
  if (backend == Backend::fast) return fast_->run(y, q, m, input.zero_point, stage);
  std::vector<int32_t> acc(m * n);
  reference::linear_accumulate(acc.data(), q, weight_.data_as<int8_t>(), m, n, k, input.zero_point);
  reference::dequantize_accumulators(y, acc.data(), m, n, stage);
}

Value DynamicLinearOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  QF_CHECK(inputs.size() == 1 && inputs[0]->data.dtype() == DType::f32, "dynamic_linear ", name,
           ": expected a float input");
  const Tensor& x = inputs[0]->data;
  const int64_t k = linear_.weight().size(1);
  QF_CHECK(x.dim() >= 2 && x.size(-1) == k, "dynamic_linear ", name, ": expected input (...,", k, "), got ",
           x.shape());
  Shape out_shape = x.shape();
  out_shape.back() = linear_.weight().size(0);
  Tensor y = Tensor::empty(out_shape);
  linear_.run(y.data(), x.data(), x.numel() / k, backend);
  return {y, {}};
}

nlohmann::json DynamicLinearOp::save(TensorMap& blobs, const std::string& prefix) const {
  save_product(blobs, prefix, linear_.weight(), linear_.weight_scale(), linear_.bias());
  return {{"in_features", linear_.weight().size(1)},
          {"out_features", linear_.weight().size(0)},
          {"relu", linear_.has_relu()},
          {"bias", !linear_.bias().empty()}};
}

ValueType DynamicLinearOp::infer(const std::vector<const ValueType*>& inputs) const {
  const ValueType& x = expect_float(inputs);
  QF_CHECK(!x.shape.empty() && x.shape.back() == linear_.weight().size(1), "it was built for ",
           linear_.weight().size(1), " input features, its input is ", describe(x));
  Shape out = x.shape;
  out.back() = linear_.weight().size(0);
  return {false, {}, out};
}

std::unique_ptr<IntegerOp> DynamicLinearOp::load(OpReader& reader) {
  const int64_t in = reader.extent("in_features"), out = reader.extent("out_features");
  const bool has_relu = reader.fields().boolean("relu", false);
  return std::make_unique<DynamicLinearOp>(load_product(reader, "", out, in, reader.flag("bias"), has_relu));
}

int64_t DynamicLinearOp::weight_bytes() const {
  return linear_.weight().size_bytes() + 8 * linear_.weight().size(0);
}

// ---- dynamic LSTM -----------------------------------------------------------------------------

namespace {

// One batch row of the cell on float pre-activations p + r (4H, gate order i, f, g, o):
// c ← f·c + i·g, h ← o·tanh(c), out ← h. Distinct restrict pointers let the loop vectorize.
void dynamic_cell_row(float* __restrict out, float* __restrict h, float* __restrict c,
                      const float* __restrict p, const float* __restrict r, int64_t hidden) {
  for (int64_t j = 0; j < hidden; ++j) {
    const LstmUnit u =
        lstm_unit(p[j] + r[j], p[hidden + j] + r[hidden + j], p[2 * hidden + j] + r[2 * hidden + j],
                  p[3 * hidden + j] + r[3 * hidden + j], c[j]);
    c[j] = u.c, h[j] = u.h, out[j] = u.h;
  }
}

}  // namespace

// The fast backend keeps the reference's arithmetic — the input products' parameters from
// the whole sequence, h's from the whole batch at every step — on Note [LSTM inference]'s
// schedule (core/ops/rnn.cpp): a block of batch rows per thread through every step, where
// the one thing rows share, h's range, is merged from the blocks' ranges at one barrier a
// step. The ranges have two slots a block, by step parity: a block writes step t+1's only
// after the barrier of step t, which every block reaches after merging step t-1's.
void dynamic_lstm_layer(float* outputs, float* h, float* c, const float* x, int64_t batch, int64_t steps,
                        const DynamicLstmLayer& layer, Backend backend) {
  const int64_t gates = layer.input.weight().size(0), hidden = gates / 4, in = layer.input.weight().size(1);
  if (backend == Backend::reference) {
    // The input projection of every step in one call: one scale for the whole sequence.
    std::vector<float> projected(batch * steps * gates), recurrent(batch * gates);
    layer.input.run(projected.data(), x, batch * steps, backend);
    for (int64_t t = 0; t < steps; ++t) {
      layer.hidden.run(recurrent.data(), h, batch, backend);  // h re-quantized at every step
      for (int64_t b = 0; b < batch; ++b)                     // the cell, as lstm_cell computes it
        dynamic_cell_row(outputs + (b * steps + t) * hidden, h + b * hidden, c + b * hidden,
                         projected.data() + (b * steps + t) * gates, recurrent.data() + b * gates, hidden);
    }
    return;
  }
  const DynamicParams x_params = layer.input.choose(x, batch * steps * in);
  const ActivationQuant x_input = dynamic_input(x_params);
  std::vector<ValueRange> ranges(2 * static_cast<std::size_t>(num_threads()));
  bool finite = true;
  parallel_row_blocks(batch, gates, [&](const RowBlock& block) {
    const int64_t first = block.first, rows = block.count;
    StepProjections projected(rows, steps, gates);
    std::vector<float> recurrent(rows * gates);
    std::vector<uint8_t> step_x(projected.ahead() ? rows * steps * in : rows * in), step_h(rows * hidden);
    // The products' stages, laid out once a block: x's parameters hold for the sequence, h's
    // are refilled every step.
    FusedStage x_stage = layer.input.make_stage(), h_stage = layer.hidden.make_stage();
    layer.input.set_input(x_stage, x_input);
    if (projected.ahead()) {
      quantize_dynamic(step_x.data(), x + first * steps * in, rows * steps * in, x_params);
      layer.input.run_fast(projected.data(), step_x.data(), rows * steps, x_stage);
    }
    for (int64_t t = 0; t < steps; ++t) {
      const float* projected_t = projected.step(t);
      if (!projected.ahead()) {
        for (int64_t r = 0; r < rows; ++r)
          quantize_dynamic(step_x.data() + r * in, x + ((first + r) * steps + t) * in, in, x_params);
        layer.input.run_fast(projected.data(), step_x.data(), rows, x_stage);
      }
      ValueRange* slots = ranges.data() + (t % 2) * block.parts;
      slots[block.part] = scan_range(h + first * hidden, rows * hidden);
#pragma omp barrier
      ValueRange range = slots[0];
      for (int part = 1; part < block.parts; ++part) range = merge(range, slots[part]);
      if (range.poison != 0.0f) {  // every block sees the same merged range and stops here
        if (block.part == 0) finite = false;
        return;
      }
      const DynamicParams h_params = choose_dynamic_params(range.min, range.max);
      quantize_dynamic(step_h.data(), h + first * hidden, rows * hidden, h_params);
      layer.hidden.set_input(h_stage, dynamic_input(h_params));
      layer.hidden.run_fast(recurrent.data(), step_h.data(), rows, h_stage);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t b = first + r;
        dynamic_cell_row(outputs + (b * steps + t) * hidden, h + b * hidden, c + b * hidden,
                         projected_t + r * projected.stride(), recurrent.data() + r * gates, hidden);
      }
    }
  });
  QF_CHECK(finite, kNotFinite);
}

DynamicLstmOp::DynamicLstmOp(std::vector<DynamicLstmLayer> layers) : layers_(std::move(layers)) {
  QF_CHECK(!layers_.empty(), "dynamic_lstm: no layers");
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const int64_t gates = layers_[l].input.weight().size(0), hidden = gates / 4;
    QF_CHECK(gates % 4 == 0 && layers_[l].hidden.weight().shape() == Shape({gates, hidden}) &&
                 (l == 0 || layers_[l].input.weight().size(1) == hidden),
             "dynamic_lstm: layer ", l, " weights ", layers_[l].input.weight().shape(), " and ",
             layers_[l].hidden.weight().shape(), " do not form an LSTM");
  }
}

Value DynamicLstmOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  QF_CHECK(inputs.size() == 1 && inputs[0]->data.dtype() == DType::f32, "dynamic_lstm ", name,
           ": expected a float input");
  const Tensor& x = inputs[0]->data;
  const int64_t batch = x.size(0),
                steps = steps_of(x, layers_[0].input.weight().size(1), "dynamic_lstm " + name);
  std::vector<float> sequence(x.data(), x.data() + x.numel()), h, c;
  for (const DynamicLstmLayer& layer : layers_) {
    const int64_t hidden = layer.hidden.weight().size(1);
    h.assign(batch * hidden, 0.0f), c.assign(batch * hidden, 0.0f);
    std::vector<float> outputs(batch * steps * hidden);
    dynamic_lstm_layer(outputs.data(), h.data(), c.data(), sequence.data(), batch, steps, layer, backend);
    sequence = std::move(outputs);
  }
  return {Tensor::from_vector({batch, static_cast<int64_t>(h.size()) / batch}, h), {}};
}

nlohmann::json DynamicLstmOp::save(TensorMap& blobs, const std::string& prefix) const {
  const bool has_bias = !layers_[0].input.bias().empty();
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::string p = prefix + layer_prefix(l);
    QF_CHECK(layers_[l].input.bias().empty() != has_bias && layers_[l].hidden.bias().empty() != has_bias,
             "dynamic_lstm: every product has a bias, or none");
    save_product(blobs, p + "ih.", layers_[l].input.weight(), layers_[l].input.weight_scale(),
                 layers_[l].input.bias());
    save_product(blobs, p + "hh.", layers_[l].hidden.weight(), layers_[l].hidden.weight_scale(),
                 layers_[l].hidden.bias());
  }
  return {{"layers", layers_.size()},
          {"input_size", layers_[0].input.weight().size(1)},
          {"hidden_size", layers_[0].hidden.weight().size(1)},
          {"bias", has_bias}};
}

ValueType DynamicLstmOp::infer(const std::vector<const ValueType*>& inputs) const {
  return lstm_output(expect_float(inputs), layers_[0].input.weight().size(1),
                     layers_.back().hidden.weight().size(1));
}

std::unique_ptr<IntegerOp> DynamicLstmOp::load(OpReader& reader) {
  const int64_t input_size = reader.extent("input_size"), hidden = reader.extent("hidden_size");
  const int64_t count = reader.extent("layers");
  if (count > 64) reader.fields().fail("layers", "expected at most 64 layers");
  const bool has_bias = reader.flag("bias");
  std::vector<DynamicLstmLayer> layers;
  for (int64_t l = 0; l < count; ++l) {
    const std::string p = layer_prefix(l);
    DynamicLinear ih =
        load_product(reader, p + "ih.", 4 * hidden, l == 0 ? input_size : hidden, has_bias, false);
    DynamicLinear hh = load_product(reader, p + "hh.", 4 * hidden, hidden, has_bias, false);
    layers.push_back({std::move(ih), std::move(hh)});
  }
  return std::make_unique<DynamicLstmOp>(std::move(layers));
}

int64_t DynamicLstmOp::weight_bytes() const {
  int64_t total = 0;
  for (const auto& l : layers_) total += l.input.weight().size_bytes() + l.hidden.weight().size_bytes();
  return total;
}

// ---- static LSTM ------------------------------------------------------------------------------

StaticLstmOp::StaticLstmOp(std::vector<StaticLstmLayer> layers) : layers_(std::move(layers)) {
  QF_CHECK(!layers_.empty(), "lstm: no layers");
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    StaticLstmLayer& layer = layers_[l];
    const int64_t gates = layer.input.weight.size(0), hidden = gates / 4;
    QF_CHECK(gates % 4 == 0 && layer.hidden.weight.defined() &&
                 layer.hidden.weight.shape() == Shape({gates, hidden}),
             "lstm: layer ", l, " weights do not form an LSTM");
    QF_CHECK(l == 0 || (layer.input.weight.size(1) == hidden &&
                        layer.input.input.scale == layers_[l - 1].state.scale &&
                        layer.input.input.zero_point == layers_[l - 1].state.zero_point),
             "lstm: layer ", l, " must read the previous layer's quantized hidden state");
    QF_CHECK(!layer.input.output && !layer.hidden.output && layer.hidden.input.scale == layer.state.scale &&
                 layer.hidden.input.zero_point == layer.state.zero_point,
             "lstm: layer ", l, ": the gate products are float, and W_hh reads the quantized hidden state");
    Kernels k;
    k.input_stage = make_dequantization(layer.input.input, layer.input.weight_scale, layer.input.bias, false);
    k.hidden_stage =
        make_dequantization(layer.hidden.input, layer.hidden.weight_scale, layer.hidden.bias, false);
    k.input = std::make_unique<fast::LinearLayer>(layer.input.weight.data_as<int8_t>(), gates,
                                                  layer.input.weight.size(1), layer.input.input.zero_point,
                                                  k.input_stage);
    k.hidden = std::make_unique<fast::LinearLayer>(layer.hidden.weight.data_as<int8_t>(), gates, hidden,
                                                   layer.hidden.input.zero_point, k.hidden_stage);
    for (int level = 0; level < 256; ++level) {  // σ and tanh over the gate grid
      const float gate = dequantize_one(static_cast<uint8_t>(level), layer.gates);
      k.sigmoid[level] = lstm_sigmoid(gate);
      k.tanh[level] = lstm_tanh(gate);
    }
    kernels_.push_back(std::move(k));
  }
}

namespace {
// y (m, n) float = the layer's float output stage on x (m, k) uint8.
void float_product(float* y, const uint8_t* x, int64_t m, const LayerQuantization& layer,
                   const fast::LinearLayer& kernel, const OutputStage& stage, Backend backend) {
  if (backend == Backend::fast) return kernel.run(y, x, m);
  const int64_t n = layer.weight.size(0), k = layer.weight.size(1);
  std::vector<int32_t> acc(m * n);
  reference::linear_accumulate(acc.data(), x, layer.weight.data_as<int8_t>(), m, n, k,
                               layer.input.zero_point);
  reference::dequantize_accumulators(y, acc.data(), m, n, stage);
}

void quantize_with(uint8_t* q, const float* x, int64_t n, const ActivationQuant& p, Backend backend) {
  (backend == Backend::reference ? reference::quantize : fast::quantize)(q, x, n, p);
}
}  // namespace

Value StaticLstmOp::run(const std::vector<const Value*>& inputs, Backend backend) const {
  QF_CHECK(inputs.size() == 1 && inputs[0]->is_quantized(), "lstm ", name, ": expected a uint8 input");
  const Value& x = *inputs[0];
  const ActivationQuant& expected = layers_[0].input.input;
  QF_CHECK(x.quant.scale == expected.scale && x.quant.zero_point == expected.zero_point, "lstm ", name,
           ": input quantized with scale ", x.quant.scale, ", zero point ", x.quant.zero_point,
           "; the layer was converted for scale ", expected.scale, ", zero point ", expected.zero_point);
  const int64_t batch = x.data.size(0),
                steps = steps_of(x.data, layers_[0].input.weight.size(1), "lstm " + name);
  std::vector<uint8_t> sequence(x.data.data_as<uint8_t>(), x.data.data_as<uint8_t>() + x.data.numel());
  std::vector<uint8_t> h;
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const StaticLstmLayer& layer = layers_[l];
    const Kernels& k = kernels_[l];
    const int64_t gates = layer.input.weight.size(0), hidden = gates / 4;
    h.assign(batch * hidden, static_cast<uint8_t>(layer.state.zero_point));  // h0 = 0, exactly representable
    Tensor c = Tensor::zeros({batch, hidden});
    std::vector<uint8_t> outputs(batch * steps * hidden);
    if (backend == Backend::fast) {
      run_layer_fast(outputs.data(), h.data(), c.data(), sequence.data(), batch, steps, l);
      sequence = std::move(outputs);
      continue;
    }
    std::vector<float> projected(batch * steps * gates), recurrent(batch * gates);
    float_product(projected.data(), sequence.data(), batch * steps, layer.input, *k.input, k.input_stage,
                  backend);
    Tensor step_gates = Tensor::empty({batch, gates});
    std::vector<uint8_t> gates_q(batch * gates);
    std::vector<float> h_float(batch * hidden);
    for (int64_t t = 0; t < steps; ++t) {
      float_product(recurrent.data(), h.data(), batch, layer.hidden, *k.hidden, k.hidden_stage, backend);
      float* g = step_gates.data();
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < gates; ++j)
          g[b * gates + j] = projected[(b * steps + t) * gates + j] + recurrent[b * gates + j];
      // The gate pre-activations on their grid (the simulation's gates_quant), then the cell.
      quantize_with(gates_q.data(), g, batch * gates, layer.gates, backend);
      (backend == Backend::reference ? reference::dequantize : fast::dequantize)(g, gates_q.data(),
                                                                                 batch * gates, layer.gates);
      const Tensor hc = cell(step_gates, c);
      c = Tensor::empty({batch, hidden});
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < hidden; ++j) {
          h_float[b * hidden + j] = hc.data()[b * 2 * hidden + j];
          c.data()[b * hidden + j] = hc.data()[b * 2 * hidden + hidden + j];
        }
      quantize_with(h.data(), h_float.data(), batch * hidden, layer.state, backend);  // hidden_quant
      for (int64_t b = 0; b < batch; ++b)
        std::copy_n(h.data() + b * hidden, hidden, outputs.data() + (b * steps + t) * hidden);
    }
    sequence = std::move(outputs);
  }
  const int64_t hidden = static_cast<int64_t>(h.size()) / batch;
  Value y{Tensor::empty({batch, hidden}, DType::u8), layers_.back().state};
  std::copy(h.begin(), h.end(), y.data.data_as<uint8_t>());
  return y;
}

nlohmann::json StaticLstmOp::save(TensorMap& blobs, const std::string& prefix) const {
  nlohmann::json layers = nlohmann::json::array();
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const StaticLstmLayer& layer = layers_[l];
    const std::string p = prefix + layer_prefix(l);
    save_product(blobs, p + "ih.", layer.input.weight, layer.input.weight_scale, layer.input.bias);
    save_product(blobs, p + "hh.", layer.hidden.weight, layer.hidden.weight_scale, layer.hidden.bias);
    layers.push_back(
        {{"input", to_json(layer.input.input)},
         {"gates", to_json(layer.gates)},
         {"hidden", to_json(layer.state)},
         {"weight_range", {layer.input.weight_range.quant_min, layer.input.weight_range.quant_max}},
         {"bias", {!layer.input.bias.empty(), !layer.hidden.bias.empty()}}});
  }
  return {{"layers", layers},
          {"input_size", layers_[0].input.weight.size(1)},
          {"hidden_size", layers_[0].hidden.weight.size(1)}};
}

ValueType StaticLstmOp::infer(const std::vector<const ValueType*>& inputs) const {
  const ValueType& x = expect_quantized(inputs);
  const ActivationQuant& expected = layers_[0].input.input;
  QF_CHECK(x.quant.scale == expected.scale && x.quant.zero_point == expected.zero_point,
           "it was converted for input scale ", expected.scale, ", zero point ", expected.zero_point,
           "; its input is ", describe(x));
  ValueType y = lstm_output(x, layers_[0].input.weight.size(1), layers_.back().hidden.weight.size(1));
  y.quant = layers_.back().state;
  return y;
}

std::unique_ptr<IntegerOp> StaticLstmOp::load(OpReader& reader) {
  ConfigReader& r = reader.fields();
  const int64_t input_size = reader.extent("input_size"), hidden = reader.extent("hidden_size");
  const nlohmann::json& list = r.raw("layers");
  if (!list.is_array() || list.empty() || list.size() > 64)
    r.fail("layers", "expected a list of 1..64 layers");
  std::vector<StaticLstmLayer> layers;
  for (std::size_t l = 0; l < list.size(); ++l) {
    ConfigReader fields(list[l], r.file(), r.key_path("layers." + std::to_string(l)));
    const std::string p = layer_prefix(l);
    StaticLstmLayer layer;
    const std::array<int64_t, 2> range = read_pair(fields, "weight_range", -128);
    if (range[1] > 127 || range[0] >= range[1])
      fields.fail("weight_range", "expected -128 <= min < max <= 127");
    layer.gates = read_activation(fields, "gates");
    layer.state = read_activation(fields, "hidden");
    const nlohmann::json& flags = fields.raw("bias");
    if (!flags.is_array() || flags.size() != 2 || !flags[0].is_boolean() || !flags[1].is_boolean())
      fields.fail("bias", "expected [true|false, true|false] for W_ih and W_hh");
    for (const bool is_input : {true, false}) {
      const std::string base = p + (is_input ? "ih." : "hh.");
      LayerQuantization q;
      q.weight =
          reader.tensor(base + "weight", DType::s8, {4 * hidden, is_input && l == 0 ? input_size : hidden});
      q.weight_scale = reader.tensor(base + "weight_scale", DType::f32, {4 * hidden}).to_vector();
      if (flags[is_input ? 0 : 1].get<bool>())
        q.bias = reader.tensor(base + "bias", DType::f32, {4 * hidden}).to_vector();
      q.weight_range = {static_cast<int32_t>(range[0]), static_cast<int32_t>(range[1])};
      q.input = is_input ? read_activation(fields, "input") : layer.state;
      (is_input ? layer.input : layer.hidden) = std::move(q);
    }
    fields.finish();
    layers.push_back(std::move(layer));
  }
  return std::make_unique<StaticLstmOp>(std::move(layers));
}

namespace {

// One batch row of the fused step (restrict pointers, so the loop vectorizes, gathering
// from the tables).
void static_cell_row(uint8_t* __restrict out, uint8_t* __restrict h, float* __restrict c,
                     const float* __restrict p, const float* __restrict r, int64_t hidden,
                     const float* __restrict sigmoid, const float* __restrict tanh,
                     const StaticLstmLayer& l) {
  const float gate_inverse = 1.0f / l.gates.scale, state_inverse = 1.0f / l.state.scale;
  const ActivationQuant gates = l.gates, state = l.state;
  for (int64_t j = 0; j < hidden; ++j) {
    const float i = sigmoid[quantize_one(p[j] + r[j], gate_inverse, gates)];
    const float f = sigmoid[quantize_one(p[hidden + j] + r[hidden + j], gate_inverse, gates)];
    const float g = tanh[quantize_one(p[2 * hidden + j] + r[2 * hidden + j], gate_inverse, gates)];
    const float o = sigmoid[quantize_one(p[3 * hidden + j] + r[3 * hidden + j], gate_inverse, gates)];
    const float cell = f * c[j] + i * g;
    c[j] = cell;
    const uint8_t level = quantize_one(o * lstm_tanh(cell), state_inverse, state);
    h[j] = level, out[j] = level;
  }
}

}  // namespace

// The fast backend's layer: Note [LSTM inference]'s schedule (core/ops/rnn.cpp) — with
// static quantization a batch row's steps read only that row, so each thread takes a block
// of rows through every step with no barrier: per step the two products into its own
// rows × 4H buffers, then the cell fused per hidden unit: the four gate pre-activations
// summed, quantized onto the gate grid, and looked up in tables of σ and tanh over that
// grid's 256 levels — the very floats lstm_cell computes from the dequantized gates, so the
// result equals the reference path byte for byte — then c, tanh(c), h and h's level.
void StaticLstmOp::run_layer_fast(uint8_t* outputs, uint8_t* h, float* c, const uint8_t* x, int64_t batch,
                                  int64_t steps, std::size_t layer) const {
  const StaticLstmLayer& l = layers_[layer];
  const Kernels& k = kernels_[layer];
  const int64_t gates = l.input.weight.size(0), hidden = gates / 4, in = l.input.weight.size(1);
  parallel_row_blocks(batch, gates, [&](const RowBlock& block) {
    const int64_t first = block.first, rows = block.count;
    StepProjections projected(rows, steps, gates);
    std::vector<float> recurrent(rows * gates);
    std::vector<uint8_t> step_inputs(projected.ahead() ? 0 : rows * in);  // the step's, gathered
    const uint8_t* x_rows = x + first * steps * in;
    if (projected.ahead()) k.input->run(projected.data(), x_rows, rows * steps);
    for (int64_t t = 0; t < steps; ++t) {
      const float* projected_t = projected.step(t);
      if (!projected.ahead()) {
        for (int64_t r = 0; r < rows; ++r)
          std::copy_n(x_rows + (r * steps + t) * in, in, step_inputs.data() + r * in);
        k.input->run(projected.data(), step_inputs.data(), rows);
      }
      k.hidden->run(recurrent.data(), h + first * hidden, rows);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t b = first + r;
        static_cell_row(outputs + (b * steps + t) * hidden, h + b * hidden, c + b * hidden,
                        projected_t + r * projected.stride(), recurrent.data() + r * gates, hidden,
                        k.sigmoid.data(), k.tanh.data(), l);
      }
    }
  });
}

int64_t StaticLstmOp::weight_bytes() const {
  int64_t total = 0;
  for (const auto& l : layers_) total += l.input.weight.size_bytes() + l.hidden.weight.size_bytes();
  return total;
}

}  // namespace qforge::quant::int8
