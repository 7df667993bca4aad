// The exporters walk a model in order and emit ONNX nodes. For the integer model each value
// id maps to an ONNX float tensor — the value itself when it is float, the output of its
// DequantizeLinear when it is uint8 (then the uint8 tensor and its parameters are kept too)
// — so every integer op becomes DQ -> float op -> Q, the pattern ONNX Runtime's QDQ
// transformer turns back into one integer kernel. The ONNX graph is NCHW throughout; the
// integer model's channels-last layout shows only where it flattens an image: its linear
// layers read (h, w, c) features (convert permuted their weights), so the export transposes
// to NHWC before that Flatten and keeps the weights as they are.
#include "quant/onnx/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include "core/autograd.h"
#include "core/file_io.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "quant/int8/integer_ops.h"
#include "quant/int8/lstm_ops.h"
#include "quant/int8/requantize.h"
#include "quant/onnx/onnx_graph.h"
#include "quant/quant_params.h"

namespace qforge::quant::onnx_io {

namespace {

// ---- the integer model -------------------------------------------------------------------------

// What one integer value is in the ONNX graph.
struct OnnxValue {
  std::string real;  // float NCHW: the value, or its DequantizeLinear's output
  bool is_quantized = false;
  int8::ActivationQuant quant;
  std::string scale, zero_point;  // the initializers of its quantization
  std::string codes;              // the uint8 tensor itself (its QuantizeLinear's output)
};

// Note [Average pools in ONNX]
// qforge's integer average pool rounds the window's mean of (q − z) half to even and then
// adds z (PyTorch's channels-last formula, quant/int8/requantize.h). ONNX Runtime fuses
// DequantizeLinear -> AveragePool -> QuantizeLinear into QLinearAveragePool, which rounds
// mean + z instead, in float: on exact ties (x.5, which a window of an even number of taps
// makes a quarter of the time for 2x2) with an odd zero point the two differ by one level
// (99.7% identical predictions on a 2x2-average-pool lenet). Where a tie can occur the export
// therefore pools the codes themselves, which ONNX Runtime cannot fuse and computes exactly:
//   Cast(q) - z -> AveragePool -> QuantizeLinear(scale 1, zero point z) -> DequantizeLinear(s, z)
// (sums of small integers and division by a power of two are exact in float). Windows of an
// odd number of taps have no ties (the mean is at least 1/(2n) from one), so they keep the
// fusable pattern and run as ONNX Runtime's integer kernel.

// Note [Dynamic quantization in ONNX]
// A dynamic model (quant.mode "dynamic": PyTorch's quantize_dynamic) exports its int8 weights,
// their scales and the biases exactly, and leaves the activations' quantization to the
// runtime, as the model does: a Linear as DynamicQuantizeLinear -> MatMulInteger -> scaled ->
// + bias, the LSTM as ONNX Runtime's DynamicQuantizeLSTM (com.microsoft; ONNX's gate order and
// layout, Note [LSTM in ONNX]). ONNX's DynamicQuantizeLinear and ONNX Runtime choose each
// activation's scale from its min and max over the whole uint8 range 0..255, where qforge and
// PyTorch use 0..127 (reduce_range): the two runtimes round activations on different grids, so
// they agree in predictions, not bit for bit (ctest onnx_runtime measures it).

// Note [Weight codes in ONNX]
// qforge's weights are int8 codes with zero point 0. ONNX Runtime runs a QDQ model's integer
// kernels as u8 x s8 GEMMs when the weights are int8; on x86 without AVX-512 VNNI (AVX2, and
// AVX-512 without VNNI) its u8 x s8 kernel is vpmaddubsw, which sums two u8·s8 products into a
// *saturating* int16 (2·255·127 > 32767), so full-range activations come out wrong (measured
// on an AVX2 machine: 97.1-98.0% of Fashion-MNIST predictions identical to the integer
// model's for lenet, jermmy and resnet8; the dynamic LSTM 89%; ONNX Runtime's own docs advise
// reduce_range or u8 weights there). With uint8 weights (q + 128, zero point 128: the same
// real values) it runs u8 x u8 kernels, which widen to int16 before multiplying and are
// exact everywhere (100%, 100%, 99.98% on the same machine). So uint8 is the default: the file
// gives qforge's predictions on whatever CPU runs it. int8 (qforge export --onnx-weights int8)
// is the faster choice for a runtime known to have VNNI.

// Note [Sub-8-bit layers in ONNX]
// ONNX Runtime fuses DequantizeLinear -> Conv/Gemm -> QuantizeLinear into one integer kernel
// only when the output's range is uint8's. A narrower range (4-bit activations) needs a Clip
// before the QuantizeLinear, and ONNX Runtime then runs the Conv in float on dequantized
// values: the formula that, for values within a float ulp of a rounding tie, lands on the
// other level than the integer accumulator (Note [The simulation runs the deployed
// arithmetic], quant/qat_modules.cpp) — 97.67% of predictions identical to the integer
// model's on the generated resnet20 W4A4 configuration. Such layers are exported as the
// integer arithmetic itself: ConvInteger or MatMulInteger on the uint8 codes (uint8 weights,
// zero point 128: exact u8 x u8 kernels, Note [Weight codes in ONNX]), then the
// requantization as ONNX ops, each one float32 operation as requantize_one runs it:
//   Cast(acc) + bias' -> x multiplier -> [Relu] -> + zy -> Round (half to even) -> Clip -> Cast(uint8)
// followed by the DequantizeLinear the next layer reads.

class IntegerExport {
 public:
  IntegerExport(const int8::IntegerModel& model, onnx::ModelProto& proto, const IntegerExportOptions& options)
      : model_(model), g_(*proto.mutable_graph()), types_(model.value_types()), options_(options) {
    values_.push_back({"input"});
  }
  std::string run() {
    for (std::size_t i = 0; i < model_.ops().size(); ++i) {
      const int8::IntegerOp& op = *model_.ops()[i];
      try {
        values_.push_back(lower(op, i));
      } catch (const ExportError& error) {
        const std::string reason = error.what();
        refuse("export: ", op.name.empty() ? "op " + std::to_string(i) : op.name, " (", op.kind(),
               "): ", reason.rfind("not exportable", 0) == 0 ? "" : "not exportable: ", reason);
      }
    }
    return values_.back().real;
  }

 private:
  const OnnxValue& input(const int8::IntegerOp& op, std::size_t k = 0) const {
    return values_[op.inputs.at(k)];
  }
  const int8::ValueType& input_type(const int8::IntegerOp& op, std::size_t k = 0) const {
    return types_[op.inputs.at(k)];
  }

  // float x -> [Clip to the levels] -> QuantizeLinear -> DequantizeLinear.
  OnnxValue quantize(const std::string& x, const int8::ActivationQuant& q, const std::string& name) {
    OnnxValue out{"", true, q, g_.scalar(name + ".scale", q.scale),
                  g_.uint8s(name + ".zero_point", {static_cast<uint8_t>(q.zero_point)}, {})};
    std::string source = x;
    if (q.quant_min > 0 || q.quant_max < 255) {  // a range narrower than uint8: clamp to its levels first
      const float lo = static_cast<float>(q.quant_min - q.zero_point) * q.scale;
      const float hi = static_cast<float>(q.quant_max - q.zero_point) * q.scale;
      g_.node("Clip", {x, g_.scalar(name + ".min", lo), g_.scalar(name + ".max", hi)}, name + ".clipped",
              name);
      source = g_.last_output();
    }
    g_.node("QuantizeLinear", {source, out.scale, out.zero_point}, name + ".quantized", name);
    out.codes = g_.last_output();
    g_.node("DequantizeLinear", {out.codes, out.scale, out.zero_point}, name + ".dequantized", name);
    out.real = g_.last_output();
    return out;
  }

  // int8 codes as uint8 with zero point 128: q + 128, the same real values.
  static std::vector<uint8_t> shifted_to_uint8(const std::vector<int8_t>& codes) {
    std::vector<uint8_t> shifted(codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) shifted[i] = static_cast<uint8_t>(codes[i] + 128);
    return shifted;
  }

  // A linear layer's int8 (N, K) weights as the (K, N) matrix MatMulInteger multiplies by.
  static std::vector<int8_t> transposed_codes(const Tensor& w) {
    const int64_t n = w.size(0), k = w.size(1);
    std::vector<int8_t> transposed(static_cast<std::size_t>(n * k));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < k; ++j) transposed[j * n + i] = w.data_as<int8_t>()[i * k + j];
    return transposed;
  }

  // Integer weights as the chosen codes (Note [Weight codes in ONNX]) and their zero points.
  std::string weight_codes(const std::string& name, const std::vector<int8_t>& codes,
                           const std::vector<int64_t>& dims) {
    if (options_.weights == WeightCodes::int8) return g_.int8s(name, codes, dims);
    return g_.uint8s(name, shifted_to_uint8(codes), dims);
  }
  std::string weight_zero_points(const std::string& name, int64_t count, const std::vector<int64_t>& dims) {
    const auto n = static_cast<std::size_t>(count);
    return options_.weights == WeightCodes::int8 ? g_.int8s(name, std::vector<int8_t>(n, 0), dims)
                                                 : g_.uint8s(name, std::vector<uint8_t>(n, 128), dims);
  }

  // A per-channel integer weight behind its DequantizeLinear (axis 0).
  std::string weight(const int8::LayerQuantization& layer, const std::string& name) {
    const Tensor& w = layer.weight;
    const auto* data = w.data_as<int8_t>();
    const std::vector<int64_t> dims(w.shape().begin(), w.shape().end());
    const int64_t channels = w.size(0);
    const std::string q =
        weight_codes(name + ".weight_quantized", std::vector<int8_t>(data, data + w.numel()), dims);
    const std::string s = g_.floats(name + ".weight_scale", layer.weight_scale, {channels});
    const std::string z = weight_zero_points(name + ".weight_zero_point", channels, {channels});
    onnx::NodeProto& dq = g_.node("DequantizeLinear", {q, s, z}, name + ".weight", name);
    GraphBuilder::set_int(dq, "axis", 0);
    return g_.last_output();
  }

  // The bias as int32 with scale s_x·s_w[c] (zero point 0) behind its DequantizeLinear; "" for none.
  std::string bias(const int8::LayerQuantization& layer, const std::string& name) {
    if (layer.bias.empty()) return "";
    const auto channels = static_cast<int64_t>(layer.bias.size());
    // The integer model's bias is on this grid already (Note [Bias quantization]): its levels, exactly.
    const std::vector<int32_t> q = bias_levels(layer.bias, layer.input.scale, layer.weight_scale);
    std::vector<float> scale(layer.bias.size());
    for (std::size_t c = 0; c < q.size(); ++c)
      scale[c] = bias_scale(layer.input.scale, layer.weight_scale[c]);
    const std::string b = g_.int32s(name + ".bias_quantized", q, {channels});
    const std::string s = g_.floats(name + ".bias_scale", scale, {channels});
    const std::string z = g_.int32s(name + ".bias_zero_point", std::vector<int32_t>(q.size(), 0), {channels});
    onnx::NodeProto& dq = g_.node("DequantizeLinear", {b, s, z}, name + ".bias", name);
    GraphBuilder::set_int(dq, "axis", 0);
    return g_.last_output();
  }

  // y (float) -> [Relu] -> quantized with the layer's output, or left float.
  OnnxValue finish_layer(const std::string& y, const int8::LayerQuantization& layer,
                         const std::string& name) {
    std::string out = y;
    if (layer.has_relu) {
      g_.node("Relu", {out}, name + ".relu", name);
      out = g_.last_output();
    }
    if (layer.output) return quantize(out, *layer.output, name + ".output");
    return {out};
  }

  // Whether ONNX Runtime would run the layer in float (Note [Sub-8-bit layers in ONNX]).
  static bool has_narrow_output(const int8::LayerQuantization& layer) {
    return layer.output && (layer.output->quant_min > 0 || layer.output->quant_max < 255);
  }

  // The layer's integer accumulator (`accumulate` makes the ConvInteger or MatMulInteger node
  // from the input codes, the uint8 weight codes and the two zero points) requantized with
  // ONNX ops, one float32 step each, as requantize_one (quant/int8/requantize.h) runs them.
  // `channel_dims` shapes the per-channel constants to broadcast over the accumulator.
  template <typename Accumulate>
  OnnxValue exact_layer(const int8::IntegerOp& op, const int8::LayerQuantization& layer,
                        const std::vector<int64_t>& weight_dims, const std::vector<int8_t>& weight_codes,
                        const std::vector<int64_t>& channel_dims, const std::string& name,
                        Accumulate accumulate) {
    const std::string w = g_.uint8s(name + ".weight_codes", shifted_to_uint8(weight_codes), weight_dims);
    const std::string wz = g_.uint8s(name + ".weight_codes_zero_point", {128}, {});
    accumulate(input(op).codes, w, input(op).zero_point, wz);
    const int8::OutputStage stage =
        int8::make_requantization(layer.input, layer.weight_scale, layer.bias, *layer.output, layer.has_relu);
    GraphBuilder::set_int(g_.node("Cast", {g_.last_output()}, name + ".accumulator", name), "to",
                          onnx::TensorProto_DataType_FLOAT);
    g_.node("Add", {g_.last_output(), g_.floats(name + ".requantize_bias", stage.bias, channel_dims)},
            name + ".biased", name);
    g_.node("Mul", {g_.last_output(), g_.floats(name + ".multiplier", stage.multiplier, channel_dims)},
            name + ".scaled", name);
    if (layer.has_relu) g_.node("Relu", {g_.last_output()}, name + ".relu", name);
    g_.node("Add",
            {g_.last_output(),
             g_.scalar(name + ".output_zero_point_float", static_cast<float>(stage.zero_point))},
            name + ".shifted", name);
    g_.node("Round", {g_.last_output()}, name + ".rounded", name);
    g_.node("Clip",
            {g_.last_output(), g_.scalar(name + ".level_min", static_cast<float>(stage.quant_min)),
             g_.scalar(name + ".level_max", static_cast<float>(stage.quant_max))},
            name + ".levels", name);
    const int8::ActivationQuant& q = *layer.output;
    OnnxValue out{"", true, q, g_.scalar(name + ".output.scale", q.scale),
                  g_.uint8s(name + ".output.zero_point", {static_cast<uint8_t>(q.zero_point)}, {})};
    GraphBuilder::set_int(g_.node("Cast", {g_.last_output()}, name + ".output.quantized", name), "to",
                          onnx::TensorProto_DataType_UINT8);
    out.codes = g_.last_output();
    g_.node("DequantizeLinear", {out.codes, out.scale, out.zero_point}, name + ".output.dequantized", name);
    out.real = g_.last_output();
    return out;
  }

  OnnxValue conv(const int8::ConvOp& op, const std::string& name) {
    const int8::LayerQuantization& layer = op.layer();
    const kernels::Conv2dShape& s = op.shape();
    auto set_geometry = [&](onnx::NodeProto& n) {
      GraphBuilder::set_ints(n, "kernel_shape", pair_of(s.kernel_height, s.kernel_width));
      GraphBuilder::set_ints(n, "strides", pair_of(s.stride_height, s.stride_width));
      GraphBuilder::set_ints(n, "pads",
                             {s.padding_height, s.padding_width, s.padding_height, s.padding_width});
      GraphBuilder::set_ints(n, "dilations", pair_of(s.dilation_height, s.dilation_width));
      GraphBuilder::set_int(n, "group", s.groups);
    };
    if (has_narrow_output(layer)) {
      const Tensor& w = layer.weight;
      return exact_layer(
          op, layer, std::vector<int64_t>(w.shape().begin(), w.shape().end()),
          std::vector<int8_t>(w.data_as<int8_t>(), w.data_as<int8_t>() + w.numel()), {w.size(0), 1, 1}, name,
          [&](const std::string& x, const std::string& codes, const std::string& xz, const std::string& wz) {
            set_geometry(g_.node("ConvInteger", {x, codes, xz, wz}, name + ".conv_integer", name));
          });
    }
    std::vector<std::string> inputs{input(op).real, weight(layer, name)};
    if (const std::string b = bias(layer, name); !b.empty()) inputs.push_back(b);
    set_geometry(g_.node("Conv", inputs, name + ".conv", name));
    return finish_layer(g_.last_output(), layer, name);
  }

  OnnxValue linear(const int8::LinearOp& op, const std::string& name) {
    if (input_type(op).shape.size() != 1)
      refuse("a linear layer on ", int8::describe(input_type(op)), " (not (N,K))");
    const int8::LayerQuantization& layer = op.layer();
    if (has_narrow_output(layer)) {
      const int64_t o = layer.weight.size(0), k = layer.weight.size(1);
      return exact_layer(
          op, layer, {k, o}, transposed_codes(layer.weight), {o}, name,
          [&](const std::string& x, const std::string& codes, const std::string& xz, const std::string& wz) {
            g_.node("MatMulInteger", {x, codes, xz, wz}, name + ".matmul_integer", name);
          });
    }
    std::vector<std::string> inputs{input(op).real, weight(layer, name)};
    if (const std::string b = bias(layer, name); !b.empty()) inputs.push_back(b);
    onnx::NodeProto& n = g_.node("Gemm", inputs, name + ".gemm", name);
    GraphBuilder::set_int(n, "transB", 1);
    return finish_layer(g_.last_output(), layer, name);
  }

  OnnxValue float_layer(const int8::FloatLayerOp& op, const std::string& name) {
    const Tensor& w = op.weight();
    std::vector<std::string> inputs{
        input(op).real,
        g_.floats(name + ".weight", w.to_vector(), std::vector<int64_t>(w.shape().begin(), w.shape().end()))};
    if (op.bias().defined()) inputs.push_back(g_.floats(name + ".bias", op.bias().to_vector(), {w.size(0)}));
    if (const auto& o = op.conv_options()) {
      onnx::NodeProto& n = g_.node("Conv", inputs, name + ".conv", name);
      GraphBuilder::set_ints(n, "kernel_shape", pair_of(w.size(2), w.size(3)));
      GraphBuilder::set_ints(n, "strides", pair_of(o->stride_height, o->stride_width));
      GraphBuilder::set_ints(n, "pads",
                             {o->padding_height, o->padding_width, o->padding_height, o->padding_width});
      GraphBuilder::set_ints(n, "dilations", pair_of(o->dilation_height, o->dilation_width));
      GraphBuilder::set_int(n, "group", o->groups);
    } else {
      if (input_type(op).shape.size() != 1) refuse("a linear layer on ", int8::describe(input_type(op)));
      GraphBuilder::set_int(g_.node("Gemm", inputs, name + ".gemm", name), "transB", 1);
    }
    std::string y = g_.last_output();
    if (op.has_relu()) {
      g_.node("Relu", {y}, name + ".relu", name);
      y = g_.last_output();
    }
    return {y};
  }

  // A float op on the dequantized value, requantized with the same parameters (pools, relu, flatten).
  OnnxValue same_grid(const OnnxValue& in, const std::string& y, const std::string& name) {
    OnnxValue out{"", true, in.quant, in.scale, in.zero_point};
    g_.node("QuantizeLinear", {y, in.scale, in.zero_point}, name + ".quantized", name);
    out.codes = g_.last_output();
    g_.node("DequantizeLinear", {out.codes, in.scale, in.zero_point}, name + ".dequantized", name);
    out.real = g_.last_output();
    return out;
  }

  // Note [Float layers in ONNX]
  // Where the integer model dequantizes (into a layer kept in float, or at the network's
  // output) the export computes (q − z)·s as Cast -> Sub -> Mul on the codes, not as a
  // DequantizeLinear: ONNX Runtime's QDQ transformers quantize the float weights of a Conv or
  // Gemm whose input comes from a DequantizeLinear and whose output goes to a QuantizeLinear
  // (turning a layer qforge keeps in float into an 8-bit one: 0.6% error on its outputs, 92% of
  // predictions kept on a 4-bit resnet20). The float product (q − z)·s is the same either way.
  std::string plain_float(const OnnxValue& in, const std::string& name) {
    if (!in.is_quantized) return in.real;
    GraphBuilder::set_int(g_.node("Cast", {in.codes}, name + ".levels", name), "to",
                          onnx::TensorProto_DataType_FLOAT);
    g_.node(
        "Sub",
        {g_.last_output(), g_.scalar(name + ".zero_point_float", static_cast<float>(in.quant.zero_point))},
        name + ".centred", name);
    g_.node("Mul", {g_.last_output(), g_.scalar(name + ".scale_float", in.quant.scale)},
            name + ".dequantized", name);
    return g_.last_output();
  }

  // An average pool whose windows may tie, on the codes (Note [Average pools in ONNX]);
  // `pool` makes the pool node on the float input it is given.
  template <typename MakePool>
  OnnxValue exact_average(const OnnxValue& in, const std::string& name, MakePool pool) {
    OnnxValue out{"", true, in.quant, in.scale, in.zero_point};
    GraphBuilder::set_int(g_.node("Cast", {in.codes}, name + ".levels", name), "to",
                          onnx::TensorProto_DataType_FLOAT);
    g_.node(
        "Sub",
        {g_.last_output(), g_.scalar(name + ".zero_point_float", static_cast<float>(in.quant.zero_point))},
        name + ".centred", name);
    pool(g_.last_output());
    g_.node("QuantizeLinear", {g_.last_output(), g_.scalar(name + ".unit_scale", 1.0f), in.zero_point},
            name + ".quantized", name);
    out.codes = g_.last_output();
    g_.node("DequantizeLinear", {out.codes, in.scale, in.zero_point}, name + ".dequantized", name);
    out.real = g_.last_output();
    return out;
  }

  OnnxValue pool(const int8::PoolOp& op, const std::string& name) {
    const int8::PoolGeometry& p = op.geometry();
    const Pool2dOptions& w = p.window;
    const bool is_max = op.pool_kind() == int8::PoolOp::Kind::max;
    if (!is_max && p.divisor_override != 0) refuse("divisor_override has no ONNX AveragePool attribute");
    auto make = [&](const std::string& x) {
      onnx::NodeProto& n = g_.node(is_max ? "MaxPool" : "AveragePool", {x}, name + ".pool", name);
      GraphBuilder::set_ints(n, "kernel_shape", pair_of(w.kernel_height, w.kernel_width));
      GraphBuilder::set_ints(n, "strides", pair_of(w.stride_height, w.stride_width));
      GraphBuilder::set_ints(n, "pads",
                             {w.padding_height, w.padding_width, w.padding_height, w.padding_width});
      GraphBuilder::set_int(n, "ceil_mode", p.ceil_mode ? 1 : 0);
      if (is_max) GraphBuilder::set_ints(n, "dilations", pair_of(w.dilation_height, w.dilation_width));
      if (!is_max) GraphBuilder::set_int(n, "count_include_pad", p.count_include_pad ? 1 : 0);
    };
    // Every window divides by kH·kW unless padding is left out of the count or ceil mode clips it.
    const bool may_tie = (w.kernel_height * w.kernel_width) % 2 == 0 || p.ceil_mode ||
                         ((w.padding_height || w.padding_width) && !p.count_include_pad);
    if (!is_max && may_tie) return exact_average(input(op), name, make);
    make(input(op).real);
    return same_grid(input(op), g_.last_output(), name);
  }

  // An adaptive pool's windows along one side — [floor(i·in/out), ceil((i+1)·in/out)) — as
  // AveragePool's (kernel, stride) when they are all one size, evenly spaced (28 -> 7, 7 -> 2:
  // kernel 4, stride 3); (0, 0) when they are not.
  static std::pair<int64_t, int64_t> regular_windows(int64_t in, int64_t out) {
    const int64_t kernel = (in + out - 1) / out, stride = out > 1 ? in / out : 1;
    for (int64_t i = 0; i < out; ++i) {
      const int64_t start = i * in / out, end = ((i + 1) * in + out - 1) / out;
      if (end - start != kernel || start != i * stride) return {0, 0};
    }
    return {kernel, stride};
  }

  OnnxValue adaptive_pool(const int8::AdaptiveAvgPoolOp& op, const std::string& name) {
    const Shape& in = input_type(op).shape;  // (H,W,C)
    // (no structured bindings: clang 14 cannot capture them in the lambda below)
    const std::pair<int64_t, int64_t> rows = regular_windows(in[0], op.out_height());
    const std::pair<int64_t, int64_t> columns = regular_windows(in[1], op.out_width());
    const int64_t kh = rows.first, sh = rows.second, kw = columns.first, sw = columns.second;
    if (kh == 0 || kw == 0)
      refuse("an adaptive pool from ", in[0], "x", in[1], " to ", op.out_height(), "x", op.out_width(),
             " has windows of unequal sizes or spacing, which ONNX's AveragePool cannot express");
    auto make = [&](const std::string& x) {
      if (op.out_height() == 1 && op.out_width() == 1) {
        g_.node("GlobalAveragePool", {x}, name + ".pool", name);
        return;
      }
      onnx::NodeProto& n = g_.node("AveragePool", {x}, name + ".pool", name);
      GraphBuilder::set_ints(n, "kernel_shape", {kh, kw});
      GraphBuilder::set_ints(n, "strides", {sh, sw});
    };
    if ((kh * kw) % 2 == 0) return exact_average(input(op), name, make);
    make(input(op).real);
    return same_grid(input(op), g_.last_output(), name);
  }

  OnnxValue add(const int8::AddOp& op, const std::string& name) {
    g_.node("Add", {input(op, 0).real, input(op, 1).real}, name + ".sum", name);
    std::string y = g_.last_output();
    if (op.has_relu()) {
      g_.node("Relu", {y}, name + ".relu", name);
      y = g_.last_output();
    }
    return quantize(y, op.output(), name + ".output");
  }

  OnnxValue flatten(const int8::IntegerOp& op, const std::string& name) {
    const int8::ValueType& type = input_type(op);
    const OnnxValue& in = input(op);
    if (type.shape.size() <= 1) return in;
    std::string x = in.real;
    // An image flattened by the integer model: (h, w, c) order, as the next linear layer reads it.
    if (type.is_quantized && type.shape.size() == 3 && type.shape[0] * type.shape[1] > 1) {
      GraphBuilder::set_ints(g_.node("Transpose", {x}, name + ".nhwc", name), "perm", {0, 2, 3, 1});
      x = g_.last_output();
    }
    GraphBuilder::set_int(g_.node("Flatten", {x}, name + ".flat", name), "axis", 1);
    return type.is_quantized ? same_grid(in, g_.last_output(), name) : OnnxValue{g_.last_output()};
  }

  OnnxValue lower(const int8::IntegerOp& op, std::size_t index) {
    const std::string name = op.name.empty() ? "op" + std::to_string(index) : op.name;
    if (auto* q = dynamic_cast<const int8::QuantizeOp*>(&op))
      return quantize(input(op).real, q->output(), name);
    if (dynamic_cast<const int8::DequantizeOp*>(&op)) return {plain_float(input(op), name)};
    if (auto* c = dynamic_cast<const int8::ConvOp*>(&op)) return conv(*c, name);
    if (auto* l = dynamic_cast<const int8::LinearOp*>(&op)) return linear(*l, name);
    if (auto* f = dynamic_cast<const int8::FloatLayerOp*>(&op)) return float_layer(*f, name);
    if (auto* p = dynamic_cast<const int8::PoolOp*>(&op)) return pool(*p, name);
    if (auto* a = dynamic_cast<const int8::AdaptiveAvgPoolOp*>(&op)) return adaptive_pool(*a, name);
    if (auto* a = dynamic_cast<const int8::AddOp*>(&op)) return add(*a, name);
    if (dynamic_cast<const int8::FlattenOp*>(&op)) return flatten(op, name);
    if (dynamic_cast<const int8::ReluOp*>(&op)) {
      g_.node("Relu", {input(op).real}, name + ".relu", name);
      return same_grid(input(op), g_.last_output(), name);
    }
    if (auto* d = dynamic_cast<const int8::DynamicLinearOp*>(&op))
      return {dynamic_linear(d->linear(), input(op).real, name)};
    if (auto* d = dynamic_cast<const int8::DynamicLstmOp*>(&op)) return {dynamic_lstm(*d, name)};
    refuse(
        "not exportable: ONNX export covers quantize, conv2d, linear, pools, add, relu, flatten, dequantize, "
        "layers kept in float and the dynamic LSTM and linear layers; the static integer LSTM (QAT) has no "
        "QDQ form in the exporter (export its float model, or convert with quant.mode \"dynamic\")");
  }

  // A weight's scale and zero point tensors: per channel (dims) or one for all ({} or {1}).
  std::pair<std::string, std::string> weight_quantization(const std::vector<float>& scale,
                                                          const std::string& name,
                                                          const std::vector<int64_t>& per_channel_dims) {
    const bool per_channel = scale.size() > 1;
    const std::vector<int64_t> dims = per_channel ? per_channel_dims : std::vector<int64_t>{};
    return {g_.floats(name + "_scale", scale, dims),
            weight_zero_points(name + "_zero_point", static_cast<int64_t>(scale.size()), dims)};
  }

  // PyTorch's dynamic Linear as ONNX's DynamicQuantizeLinear -> MatMulInteger -> scale -> bias,
  // which ONNX Runtime fuses into DynamicQuantizeMatMul (Note [Dynamic quantization in ONNX]).
  std::string dynamic_linear(const int8::DynamicLinear& linear, const std::string& x,
                             const std::string& name) {
    const Tensor& w = linear.weight();  // int8 (N,K)
    const int64_t n = w.size(0), k = w.size(1);
    onnx::NodeProto& q =
        g_.node_with_outputs("DynamicQuantizeLinear", {x},
                             {name + ".x_quantized", name + ".x_scale", name + ".x_zero_point"}, name);
    const std::string xq = q.output(0), xs = q.output(1), xz = q.output(2);
    g_.node("MatMulInteger",
            {xq, weight_codes(name + ".weight_quantized", transposed_codes(w), {k, n}), xz,
             weight_zero_points(name + ".weight_zero_point", n, {n})},
            name + ".accumulator", name);
    GraphBuilder::set_int(g_.node("Cast", {g_.last_output()}, name + ".accumulator_float", name), "to",
                          onnx::TensorProto_DataType_FLOAT);
    g_.node("Mul", {g_.last_output(), xs}, name + ".x_scaled", name);
    const std::vector<float>& ws = linear.weight_scale();
    g_.node("Mul",
            {g_.last_output(), g_.floats(name + ".weight_scale", ws,
                                         ws.size() > 1 ? std::vector<int64_t>{n} : std::vector<int64_t>{})},
            name + ".scaled", name);
    if (!linear.bias().empty())
      g_.node("Add", {g_.last_output(), g_.floats(name + ".bias", linear.bias(), {n})}, name + ".biased",
              name);
    if (linear.has_relu()) g_.node("Relu", {g_.last_output()}, name + ".relu", name);
    return g_.last_output();
  }

  // PyTorch's dynamic LSTM as ONNX Runtime's DynamicQuantizeLSTM (com.microsoft), one per layer.
  std::string dynamic_lstm(const int8::DynamicLstmOp& op, const std::string& name) {
    uses_microsoft_domain_ = true;
    const auto& layers = op.layers();
    std::string sequence = sequence_input(g_, input(op).real, layers[0].input.weight().size(1), name);
    std::string last;
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const std::string layer = name + ".l" + std::to_string(l);
      const int8::DynamicLinear &wi = layers[l].input, &wh = layers[l].hidden;
      const int64_t gates = wi.weight().size(0), hidden = gates / 4;
      // ONNX Runtime's layout: W (1, in, 4H), R (1, H, 4H), gates i, o, f, c.
      auto quantized = [&](const int8::DynamicLinear& linear, const std::string& base) {
        const int64_t columns = linear.weight().size(1);
        const std::vector<int8_t> rows = to_onnx_gates(linear.weight().data_as<int8_t>(), gates, columns);
        std::vector<int8_t> transposed(rows.size());
        for (int64_t g = 0; g < gates; ++g)
          for (int64_t c = 0; c < columns; ++c) transposed[c * gates + g] = rows[g * columns + c];
        const std::vector<float>& s = linear.weight_scale();
        const std::vector<float> scale = s.size() > 1 ? to_onnx_gates(s.data(), gates, 1) : s;
        auto [scale_name, zero_point_name] = weight_quantization(scale, layer + "." + base, {1, gates});
        return std::array<std::string, 3>{
            weight_codes(layer + "." + base + "_quantized", transposed, {1, columns, gates}), scale_name,
            zero_point_name};
      };
      std::vector<float> bias = to_onnx_gates(wi.bias().data(), gates, 1);
      const std::vector<float> hidden_bias = to_onnx_gates(wh.bias().data(), gates, 1);
      bias.insert(bias.end(), hidden_bias.begin(), hidden_bias.end());
      const auto w = quantized(wi, "W"), r = quantized(wh, "R");
      onnx::NodeProto& n =
          g_.node_with_outputs("DynamicQuantizeLSTM",
                               {sequence, w[0], r[0], g_.floats(layer + ".B", bias, {1, 2 * gates}), "", "",
                                "", "", w[1], w[2], r[1], r[2]},
                               {layer + ".Y", layer + ".Y_h"}, layer);
      n.set_domain("com.microsoft");
      GraphBuilder::set_int(n, "hidden_size", hidden);
      const std::string y = n.output(0), y_h = n.output(1);
      sequence = layer_sequence(g_, y, layer);
      last = y_h;
    }
    return last_hidden(g_, last, name);
  }

 public:
  bool uses_microsoft_domain() const { return uses_microsoft_domain_; }

 private:
  bool uses_microsoft_domain_ = false;

  const int8::IntegerModel& model_;
  GraphBuilder g_;
  std::vector<int8::ValueType> types_;
  IntegerExportOptions options_;
  std::vector<OnnxValue> values_;
};

}  // namespace

WeightCodes parse_weight_codes(const std::string& name, const std::string& what) {
  if (name == "uint8") return WeightCodes::uint8;
  if (name == "int8") return WeightCodes::int8;
  QF_FAIL(what, ": \"", name, "\" is not a weight type for ONNX; expected \"uint8\" or \"int8\"");
}

std::string export_integer_onnx(const int8::IntegerModel& model, const IntegerExportOptions& options) {
  onnx::ModelProto proto = new_model(model.input_shape);
  IntegerExport exporter(model, proto, options);
  const std::string logits = exporter.run();
  if (exporter.uses_microsoft_domain()) {
    onnx::OperatorSetIdProto* opset = proto.add_opset_import();
    opset->set_domain("com.microsoft");
    opset->set_version(1);
  }
  const int8::ValueType output = model.value_types().back();
  QF_CHECK(output.shape.size() == 1, "export: the model's output is ", int8::describe(output),
           ", not (N, classes)");
  GraphBuilder g(*proto.mutable_graph());
  add_output(proto, g, logits, output.shape[0]);
  return serialize(proto);
}

void check_onnx(const std::string& bytes, const std::string& what) {
  onnx::ModelProto model;
  QF_CHECK(model.ParseFromString(bytes), what, ": not an ONNX model (protobuf does not parse)");
  try {
    onnx::checker::check_model(model);
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions{/*check_type=*/true, /*strict_mode=*/1});
  } catch (const std::exception& error) {
    QF_FAIL(what, ": the ONNX checker refuses the model: ", error.what());
  }
}

void write_onnx(const std::string& bytes, const std::string& path) {
  check_onnx(bytes, path);
  write_file_atomically(path, bytes);
}

std::string describe_onnx(const std::string& bytes, const std::string& path) {
  onnx::ModelProto model;
  QF_CHECK(model.ParseFromString(bytes), path, ": not an ONNX model (protobuf does not parse)");
  std::map<std::string, int> counts;
  for (const onnx::NodeProto& node : model.graph().node())
    ++counts[(node.domain().empty() ? "" : node.domain() + ".") + node.op_type()];
  std::ostringstream out;
  out << path << ": ONNX model, ir_version " << model.ir_version() << ", producer \"" << model.producer_name()
      << "\", " << model.graph().node_size() << " nodes, " << model.graph().initializer_size()
      << " initializers\n";
  for (const auto& [op, count] : counts) out << "  " << op << " " << count << "\n";
  return out.str();
}

}  // namespace qforge::quant::onnx_io
