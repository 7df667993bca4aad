// quant/onnx/onnx_export: the QDQ graph of an integer model holds exactly the .qfm's numbers
// (integer weights, scales, zero points, int32 bias levels) in the pattern ONNX Runtime's QDQ
// transformer fuses; narrow widths clamp; float models export plain; what cannot be
// expressed is refused by name and nothing is written; every file passes onnx::checker.
// The numerics themselves are checked by a consumer qforge did not write: ONNX Runtime
// (ctest onnx_runtime, tests/onnx/ort_agreement.sh).
#include <doctest/doctest.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <filesystem>
#include <map>

#include "core/autograd.h"
#include "core/file_io.h"
#include "core/ops.h"
#include "nn/lstm.h"
#include "nn/zoo.h"
#include "quant/convert.h"
#include "quant/int8/integer_ops.h"
#include "quant/int8/lstm_ops.h"
#include "quant/int8/requantize.h"
#include "quant/onnx/onnx_export.h"
#include "quant/prepare.h"
#include "quant/quant_params.h"
#include "tests/temp_folder.h"

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;

namespace {

std::shared_ptr<QatModel> calibrated(const std::string& name, const json& quant_section) {
  Generator generator(7);
  auto prepared =
      prepare_qat(nn::build_zoo_model(name, generator), parse_quant_spec(quant_section, "test.json"));
  prepared->train();
  NoGradGuard no_grad;
  const Shape input = name == "lstm" ? Shape{16, 28, 28} : Shape{16, 1, 28, 28};
  for (int i = 0; i < 3; ++i) prepared->forward(relu(Tensor::randn(input, generator)));
  prepared->eval();
  return prepared;
}

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto model;
  REQUIRE(model.ParseFromString(bytes));
  return model;
}

const onnx::TensorProto& initializer(const onnx::ModelProto& model, const std::string& name) {
  for (const onnx::TensorProto& t : model.graph().initializer())
    if (t.name() == name) return t;
  FAIL("no initializer ", name);
  throw 0;
}

template <typename T>
std::vector<T> values_of(const onnx::TensorProto& t) {
  std::vector<T> out(t.raw_data().size() / sizeof(T));
  std::memcpy(out.data(), t.raw_data().data(), t.raw_data().size());
  return out;
}

// Which node writes each value, and which nodes read it.
struct Edges {
  std::map<std::string, const onnx::NodeProto*> producer;
  std::map<std::string, std::vector<const onnx::NodeProto*>> consumers;
  explicit Edges(const onnx::ModelProto& model) {
    for (const onnx::NodeProto& n : model.graph().node()) {
      for (const std::string& o : n.output()) producer[o] = &n;
      for (const std::string& i : n.input()) consumers[i].push_back(&n);
    }
  }
  std::string made_by(const std::string& value) const {
    const auto it = producer.find(value);
    return it == producer.end() ? "initializer or input" : it->second->op_type();
  }
};

int count(const onnx::ModelProto& model, const std::string& op_type) {
  int n = 0;
  for (const onnx::NodeProto& node : model.graph().node()) n += node.op_type() == op_type;
  return n;
}

// Every integer conv/linear: its inputs come from DequantizeLinear (activation <- QuantizeLinear,
// int8 weight, int32 bias) and its output goes (through a Relu) to a QuantizeLinear or is a float
// output: the node unit ONNX Runtime's QDQ selectors take (qdq_selectors.cc, ConvNodeGroupSelector).
void check_qdq_units(const onnx::ModelProto& model, int weight_type = onnx::TensorProto_DataType_UINT8) {
  const Edges edges(model);
  int units = 0;
  for (const onnx::NodeProto& n : model.graph().node()) {
    if (n.op_type() != "Conv" && n.op_type() != "Gemm") continue;
    if (edges.made_by(n.input(1)) != "DequantizeLinear") continue;  // a layer kept in float
    CAPTURE(n.name());
    ++units;
    CHECK(edges.made_by(n.input(0)) == "DequantizeLinear");
    CHECK(edges.made_by(edges.producer.at(n.input(0))->input(0)) == "QuantizeLinear");
    const onnx::NodeProto& weight_dq = *edges.producer.at(n.input(1));
    CHECK(initializer(model, weight_dq.input(0)).data_type() == weight_type);
    if (n.input_size() > 2) {
      const onnx::NodeProto& bias_dq = *edges.producer.at(n.input(2));
      CHECK(bias_dq.op_type() == "DequantizeLinear");
      CHECK(initializer(model, bias_dq.input(0)).data_type() == onnx::TensorProto_DataType_INT32);
    }
    const auto& next = edges.consumers.at(n.output(0));
    REQUIRE(next.size() == 1);
    const onnx::NodeProto* after = next[0];
    if (after->op_type() == "Relu") after = edges.consumers.at(after->output(0)).at(0);
    CHECK((after->op_type() == "QuantizeLinear" || after->op_type() == "Clip" ||
           after->op_type() == "Identity"));
  }
  CHECK(units > 0);
}

}  // namespace

TEST_CASE(
    "ONNX export: the QDQ graph holds the integer model's weights, scales, zero points and bias levels") {
  for (const char* name : {"lenet", "resnet8", "jermmy"})
    for (const onnx_io::WeightCodes codes : {onnx_io::WeightCodes::uint8, onnx_io::WeightCodes::int8}) {
      CAPTURE(name);
      const bool as_int8 = codes == onnx_io::WeightCodes::int8;
      CAPTURE(as_int8);
      auto prepared = calibrated(name, json::object());
      const int8::IntegerModel integer = convert(*prepared, {1, 28, 28});
      const std::string bytes = onnx_io::export_integer_onnx(integer, {.weights = codes});
      CHECK_NOTHROW(onnx_io::check_onnx(bytes, name));
      const onnx::ModelProto model = parse(bytes);
      CHECK(model.opset_import(0).version() == 13);
      check_qdq_units(model, as_int8 ? onnx::TensorProto_DataType_INT8 : onnx::TensorProto_DataType_UINT8);
      int layers = 0;
      for (const auto& op : integer.ops()) {
        const int8::LayerQuantization* layer = nullptr;
        if (auto* conv = dynamic_cast<const int8::ConvOp*>(op.get())) layer = &conv->layer();
        if (auto* linear = dynamic_cast<const int8::LinearOp*>(op.get())) layer = &linear->layer();
        if (!layer) continue;
        CAPTURE(op->name);
        ++layers;
        // The same real weights either way (Note [Weight codes in ONNX]): q with zero point 0, or
        // q + 128 with zero point 128.
        const Tensor& w = layer->weight;
        const std::vector<int8_t> q(w.data_as<int8_t>(), w.data_as<int8_t>() + w.numel());
        if (as_int8) {
          CHECK(values_of<int8_t>(initializer(model, op->name + ".weight_quantized")) == q);
          CHECK(values_of<int8_t>(initializer(model, op->name + ".weight_zero_point")) ==
                std::vector<int8_t>(layer->weight_scale.size(), 0));
        } else {
          std::vector<uint8_t> shifted;
          for (const int8_t v : q) shifted.push_back(static_cast<uint8_t>(int{v} + 128));
          CHECK(values_of<uint8_t>(initializer(model, op->name + ".weight_quantized")) == shifted);
          CHECK(values_of<uint8_t>(initializer(model, op->name + ".weight_zero_point")) ==
                std::vector<uint8_t>(layer->weight_scale.size(), 128));
        }
        CHECK(values_of<float>(initializer(model, op->name + ".weight_scale")) == layer->weight_scale);
        const std::vector<int32_t> levels = bias_levels(layer->bias, layer->input.scale, layer->weight_scale);
        CHECK(values_of<int32_t>(initializer(model, op->name + ".bias_quantized")) == levels);
        // The integer model's bias is exactly these levels times s_x*s_w (convert put it on the grid).
        for (std::size_t c = 0; c < levels.size(); ++c)
          CHECK(layer->bias[c] ==
                static_cast<float>(levels[c]) * bias_scale(layer->input.scale, layer->weight_scale[c]));
        if (layer->output) {
          CHECK(values_of<float>(initializer(model, op->name + ".output.scale")) ==
                std::vector<float>{layer->output->scale});
          CHECK(values_of<uint8_t>(initializer(model, op->name + ".output.zero_point")) ==
                std::vector<uint8_t>{static_cast<uint8_t>(layer->output->zero_point)});
        }
      }
      CHECK(layers == count(model, "Conv") + count(model, "Gemm"));
      // 8 bits: no clamp beyond QuantizeLinear's own.
      CHECK(count(model, "Clip") == 0);
    }
}

// Note [Sub-8-bit layers in ONNX]: a conv or linear layer with a sub-8-bit output is its integer
// arithmetic (ConvInteger / MatMulInteger, then the requantization's float steps); every other
// quantize of a narrow range clamps to its levels before its QuantizeLinear.
TEST_CASE("ONNX export: 4- and 2-bit layers are exported as integer arithmetic, clamped to their levels") {
  for (int bits : {4, 2}) {
    CAPTURE(bits);
    auto prepared = calibrated("lenet", {{"weight", {{"bits", bits}}}, {"activation", {{"bits", bits}}}});
    const int8::IntegerModel integer = convert(*prepared, {1, 28, 28});
    const onnx::ModelProto model = parse(onnx_io::export_integer_onnx(integer));
    CHECK_NOTHROW(onnx_io::check_onnx(onnx_io::export_integer_onnx(integer), "lenet"));
    int narrow = 0, wide = 0;
    for (const auto& op : integer.ops()) {
      const int8::LayerQuantization* layer = nullptr;
      if (auto* conv = dynamic_cast<const int8::ConvOp*>(op.get())) layer = &conv->layer();
      if (auto* linear = dynamic_cast<const int8::LinearOp*>(op.get())) layer = &linear->layer();
      if (!layer) continue;
      const bool is_narrow = layer->output && layer->output->quant_max - layer->output->quant_min < 255;
      (is_narrow ? narrow : wide)++;
      if (!is_narrow) continue;
      // The requantization's constants are the integer model's own (make_requantization).
      const int8::OutputStage stage = int8::make_requantization(layer->input, layer->weight_scale,
                                                                layer->bias, *layer->output, layer->has_relu);
      CAPTURE(op->name);
      CHECK(values_of<float>(initializer(model, op->name + ".multiplier")) == stage.multiplier);
      CHECK(values_of<float>(initializer(model, op->name + ".requantize_bias")) == stage.bias);
    }
    CHECK(narrow > 0);
    CHECK(count(model, "ConvInteger") + count(model, "MatMulInteger") == narrow);
    CHECK(count(model, "Conv") + count(model, "Gemm") == wide);
    CHECK(count(model, "Round") == narrow);
    const Edges edges(model);
    // Every QuantizeLinear clamps first, unless it re-quantizes a pool's or flatten's output on its input's
    // grid.
    for (const onnx::NodeProto& n : model.graph().node())
      if (n.op_type() == "QuantizeLinear") {
        const std::string before = edges.made_by(n.input(0));
        CAPTURE(n.name());
        CHECK((before == "Clip" || before == "MaxPool" || before == "Flatten"));
      }
    for (const onnx::NodeProto& n : model.graph().node()) {
      if (n.op_type() != "Clip") continue;
      CAPTURE(n.name());
      const float lo = values_of<float>(initializer(model, n.input(1)))[0];
      const float hi = values_of<float>(initializer(model, n.input(2)))[0];
      const onnx::NodeProto& next = *edges.consumers.at(n.output(0)).at(0);
      if (next.op_type() == "Cast") {  // an integer layer's rounded levels: [qmin, qmax] itself
        CHECK(edges.made_by(n.input(0)) == "Round");
        CHECK(hi - lo == static_cast<float>((1 << bits) - 1));
        continue;
      }
      // [ (qmin - z)·s, (qmax - z)·s ]: the clamp spans exactly 2^bits levels of the next quantize.
      REQUIRE(next.op_type() == "QuantizeLinear");
      const float scale = values_of<float>(initializer(model, next.input(1)))[0];
      CHECK((hi - lo) / scale == doctest::Approx((1 << bits) - 1).epsilon(1e-4));
    }
  }
}

// Note [Float layers in ONNX]: its input is (q − z)·s computed from the codes (Cast, Sub, Mul), not a
// DequantizeLinear, so that ONNX Runtime cannot quantize its float weights.
TEST_CASE("ONNX export: a layer kept in float stays float, its input dequantized from the codes") {
  auto prepared = calibrated("lenet", {{"overrides", {{{"name", "4"}, {"float", true}}}}});
  const int8::IntegerModel integer = convert(*prepared, {1, 28, 28});
  const onnx::ModelProto model = parse(onnx_io::export_integer_onnx(integer));
  const Edges edges(model);
  int float_layers = 0;
  for (const onnx::NodeProto& n : model.graph().node()) {
    if (n.op_type() != "Conv" || edges.made_by(n.input(1)) != "initializer or input") continue;
    ++float_layers;
    CHECK(initializer(model, n.input(1)).data_type() == onnx::TensorProto_DataType_FLOAT);
    REQUIRE(edges.made_by(n.input(0)) == "Mul");
    const onnx::NodeProto& sub = *edges.producer.at(edges.producer.at(n.input(0))->input(0));
    REQUIRE(sub.op_type() == "Sub");
    const onnx::NodeProto& cast = *edges.producer.at(sub.input(0));
    REQUIRE(cast.op_type() == "Cast");
    CHECK(edges.made_by(cast.input(0)) == "QuantizeLinear");
  }
  CHECK(float_layers == 1);
}

TEST_CASE(
    "ONNX export: float models export plain; what ONNX cannot express is refused by name, nothing written") {
  Generator generator(3);
  nn::ModulePtr resnet = nn::build_zoo_model("resnet8", generator);
  const onnx::ModelProto plain = parse(onnx_io::export_float_onnx(*resnet, {1, 28, 28}));
  CHECK(count(plain, "QuantizeLinear") == 0);
  CHECK(count(plain, "BatchNormalization") > 0);
  CHECK(count(plain, "Add") == 3);  // the residual adds

  // The static integer LSTM has no QDQ form in the exporter: a clear error naming the layer.
  auto lstm = calibrated("lstm", json::object());
  const int8::IntegerModel integer_lstm = convert(*lstm, {28, 28});
  CHECK_THROWS_WITH_AS(onnx_io::export_integer_onnx(integer_lstm), doctest::Contains("not exportable"),
                       onnx_io::ExportError);
  try {
    onnx_io::export_integer_onnx(integer_lstm);
  } catch (const onnx_io::ExportError& error) {
    CHECK(std::string(error.what()).find("lstm") != std::string::npos);
  }

  // Bytes that are not a checked model are never written; a file already there is kept.
  const std::string folder = testing::fresh_temp_folder("onnx_export");
  const std::string path = folder + "/model.onnx";
  write_file_atomically(path, "earlier");
  CHECK_THROWS_WITH_AS(onnx_io::write_onnx("not protobuf at all \xff\xff", path),
                       doctest::Contains("model.onnx"), Error);
  onnx::ModelProto broken = plain;
  broken.mutable_graph()->mutable_node(0)->set_input(0, "nowhere");  // a dangling input
  std::string broken_bytes;
  REQUIRE(broken.SerializeToString(&broken_bytes));
  CHECK_THROWS_WITH_AS(onnx_io::write_onnx(broken_bytes, path), doctest::Contains("ONNX checker"), Error);
  CHECK(read_file(path) == "earlier");
}

TEST_CASE("ONNX export: LSTMs in ONNX's gate order — float as LSTM, dynamic int8 as DynamicQuantizeLSTM") {
  Generator generator(11);
  nn::ModulePtr model = nn::build_zoo_model("lstm", generator);
  model->eval();
  const onnx::ModelProto plain = parse(onnx_io::export_float_onnx(*model, {1, 28, 28}));
  CHECK(count(plain, "LSTM") == dynamic_cast<nn::LstmClassifier&>(*model).lstm->num_layers());
  const int8::IntegerModel dynamic =
      convert_dynamic(*model, parse_quant_spec(json::object(), "t.json").defaults.weight, {1, 28, 28});
  const std::string bytes = onnx_io::export_integer_onnx(dynamic, {.weights = onnx_io::WeightCodes::int8});
  CHECK_NOTHROW(onnx_io::check_onnx(bytes, "dynamic"));
  // The default, uint8 codes: the same weights plus 128, zero points 128.
  const onnx::ModelProto unsigned_proto = parse(onnx_io::export_integer_onnx(dynamic));
  const std::string w_name = dynamic.ops()[0]->name + ".l0.W";
  const std::vector<uint8_t> unsigned_codes =
      values_of<uint8_t>(initializer(unsigned_proto, w_name + "_quantized"));
  const std::vector<int8_t> signed_codes =
      values_of<int8_t>(initializer(parse(bytes), w_name + "_quantized"));
  REQUIRE(unsigned_codes.size() == signed_codes.size());
  for (std::size_t i = 0; i < signed_codes.size(); ++i)
    CHECK(int{unsigned_codes[i]} == int{signed_codes[i]} + 128);
  for (const uint8_t z : values_of<uint8_t>(initializer(unsigned_proto, w_name + "_zero_point")))
    CHECK(z == 128);
  const onnx::ModelProto model_proto = parse(bytes);
  CHECK(count(model_proto, "DynamicQuantizeLSTM") == 1);
  CHECK(count(model_proto, "MatMulInteger") == 1);  // the classifier's dynamic Linear
  bool has_microsoft = false;
  for (const auto& opset : model_proto.opset_import()) has_microsoft |= opset.domain() == "com.microsoft";
  CHECK(has_microsoft);
  // W (1, in, 4H) holds qforge's (4H, in) rows transposed, gates reordered i,f,g,o -> i,o,f,c.
  const auto& op = dynamic_cast<const int8::DynamicLstmOp&>(*dynamic.ops()[0]);
  const Tensor& w = op.layers()[0].input.weight();
  const int64_t gates = w.size(0), hidden = gates / 4, in = w.size(1);
  const std::vector<int8_t> exported =
      values_of<int8_t>(initializer(model_proto, dynamic.ops()[0]->name + ".l0.W_quantized"));
  REQUIRE(exported.size() == static_cast<std::size_t>(gates * in));
  const int64_t onnx_gate_of[4] = {0, 2, 3, 1};  // qforge's i, f, g, o at ONNX's positions
  for (int64_t g = 0; g < 4; ++g)
    for (int64_t r : {int64_t{0}, hidden - 1})
      for (int64_t c : {int64_t{0}, in - 1})
        CHECK(exported[c * gates + onnx_gate_of[g] * hidden + r] ==
              w.data_as<int8_t>()[(g * hidden + r) * in + c]);
}

TEST_CASE("ONNX export: the weight type is uint8 or int8, and anything else is refused by name") {
  CHECK(onnx_io::parse_weight_codes("uint8", "--onnx-weights") == onnx_io::WeightCodes::uint8);
  CHECK(onnx_io::parse_weight_codes("int8", "--onnx-weights") == onnx_io::WeightCodes::int8);
  CHECK_THROWS_WITH_AS(onnx_io::parse_weight_codes("s8", "--onnx-weights"),
                       doctest::Contains("--onnx-weights: \"s8\" is not a weight type"), Error);
}
