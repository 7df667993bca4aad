// quant/onnx/onnx_import: qforge's own float exports come back as the same function (chains,
// residual blocks with and without projection shortcuts, every layer type); a PyTorch export
// (Pad + AveragePool, shared initializers behind Identity, MatMul + Add) imports; and every
// way a file can be wrong or unsupported is one error naming the file and the node. The
// PyTorch-trained models on real data, against PyTorch's accuracy and ONNX Runtime's logits:
// ctest onnx_runtime (tests/onnx/ort_agreement.sh).
#include <doctest/doctest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "core/autograd.h"
#include "core/file_io.h"
#include "core/random.h"
#include "nn/zoo.h"
#include "quant/onnx/onnx_export.h"
#include "quant/onnx/onnx_import.h"
#include "train/config.h"

using namespace qforge;
using namespace qforge::quant::onnx_io;
using nlohmann::json;

namespace {

// The model the imported layers build, with the imported weights.
nn::ModulePtr build(const ImportedModel& imported) {
  const json config = {{"data", {{"dataset", "idx"}, {"path", "unused"}}},
                       {"model", {{"layers", imported.layers}}}};
  nn::ModulePtr model = train::build_model(train::parse_config(config, "imported.json"), 0);
  model->load_state_dict(imported.state, "imported");
  model->eval();
  return model;
}

float largest_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  float worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(a.data()[i] - b.data()[i]));
  return worst;
}

std::string tiny_torch() { return read_file(QFORGE_SOURCE_DIR "/tests/fuzz/corpus/onnx/tiny_torch.onnx"); }

onnx::ModelProto parse_model(const std::string& bytes) {
  onnx::ModelProto model;
  REQUIRE(model.ParseFromString(bytes));
  return model;
}

std::string bytes_of(const onnx::ModelProto& model) {
  std::string bytes;
  REQUIRE(model.SerializeToString(&bytes));
  return bytes;
}

onnx::TensorProto& conv1_weight(onnx::ModelProto& model) {
  for (onnx::TensorProto& t : *model.mutable_graph()->mutable_initializer())
    if (t.name() == "conv1.weight") return t;
  FAIL("no conv1.weight");
  throw 0;
}

onnx::NodeProto& node_of(onnx::ModelProto& model, const std::string& op_type) {
  for (onnx::NodeProto& node : *model.mutable_graph()->mutable_node())
    if (node.op_type() == op_type) return node;
  FAIL("no ", op_type);
  throw 0;
}

}  // namespace

TEST_CASE("ONNX import: qforge's float exports come back as the same function") {
  Generator generator(5);
  NoGradGuard no_grad;
  const Tensor images = Tensor::randn({4, 1, 28, 28}, generator);
  for (const char* name : {"lenet", "jermmy", "resnet8"}) {
    CAPTURE(name);
    nn::ModulePtr original = nn::build_zoo_model(name, generator);
    // BatchNorm statistics away from their defaults, so that folding them wrongly would show.
    original->train();
    original->forward(Tensor::randn({16, 1, 28, 28}, generator));
    original->eval();
    const ImportedModel imported = import_onnx(export_float_onnx(*original, {1, 28, 28}), name);
    CHECK(imported.input_shape == Shape{1, 28, 28});
    CHECK(imported.classes == 10);
    const Tensor expected = original->forward(images);
    CHECK(largest_difference(build(imported)->forward(images), expected) <= 1e-5f);
  }
  // A layer list with residual blocks: an identity shortcut, a projection, and one without a ReLU after the
  // add.
  const json layers = json::parse(R"([
    {"type": "conv2d", "in": 1, "out": 4, "kernel": 3, "padding": 1, "bias": false},
    {"type": "batchnorm2d", "channels": 4}, {"type": "relu"},
    {"type": "residual", "layers": [{"type": "conv2d", "in": 4, "out": 4, "kernel": 3, "padding": 1}, {"type": "relu"},
                                    {"type": "conv2d", "in": 4, "out": 4, "kernel": 3, "padding": 1}]},
    {"type": "residual", "relu": false,
     "layers": [{"type": "conv2d", "in": 4, "out": 8, "kernel": 3, "stride": 2, "padding": 1}],
     "shortcut": [{"type": "conv2d", "in": 4, "out": 8, "kernel": 1, "stride": 2}, {"type": "batchnorm2d", "channels": 8}]},
    {"type": "avgpool2d", "kernel": 2}, {"type": "maxpool2d", "kernel": 3, "stride": 1, "padding": 1},
    {"type": "adaptive_avgpool2d", "size": 1}, {"type": "flatten"}, {"type": "dropout", "p": 0.3},
    {"type": "linear", "in": 8, "out": 5}])");
  const train::RunConfig config = train::parse_config(
      {{"data", {{"dataset", "idx"}, {"path", "unused"}}}, {"model", {{"layers", layers}}}}, "layers.json");
  nn::ModulePtr original = train::build_model(config, 9);
  original->eval();
  const ImportedModel imported = import_onnx(export_float_onnx(*original, {1, 12, 12}), "layers");
  const Tensor x = Tensor::randn({3, 1, 12, 12}, generator);
  CHECK(largest_difference(build(imported)->forward(x), original->forward(x)) <= 1e-5f);
  // The two blocks come back as residual layers; the second keeps its missing ReLU and its shortcut.
  int blocks = 0;
  for (const json& layer : imported.layers)
    if (layer["type"] == "residual") {
      ++blocks;
      if (blocks == 2) {
        CHECK(layer["relu"] == false);
        CHECK(layer["shortcut"].size() == 2);
      }
    }
  CHECK(blocks == 2);
}

TEST_CASE("ONNX import: a PyTorch export (Pad + AveragePool, Identity-shared initializers, MatMul + Add)") {
  const ImportedModel imported = import_onnx(tiny_torch(), "tiny_torch.onnx");
  CHECK(imported.producer.rfind("pytorch", 0) == 0);
  CHECK(imported.opset == 13);
  CHECK(imported.input_shape == Shape{1, 6, 6});
  CHECK(imported.classes == 3);
  std::vector<std::string> types;
  for (const json& layer : imported.layers) types.push_back(layer["type"]);
  CHECK(types == std::vector<std::string>{"conv2d", "relu", "avgpool2d", "residual", "flatten", "linear"});
  CHECK(imported.layers[3]["relu"] == true);
  CHECK(!imported.layers[3].contains("shortcut"));
  // MatMul's (in, out) weight is stored as a linear layer's (out, in).
  CHECK(imported.state.at("5.weight").shape() == Shape{3, 18});
  CHECK_NOTHROW(build(imported));
}

TEST_CASE("ONNX import: wrong, hostile and unsupported files are one error naming the file and the node") {
  struct Case {
    const char* what;
    std::function<void(onnx::ModelProto&)> edit;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases{
      {"an unsupported op",
       [](onnx::ModelProto& m) { node_of(m, "Relu").set_op_type("Sigmoid"); },
       {"node \"", "(Sigmoid): not supported", "qforge imports Conv, BatchNormalization"}},
      {"another domain",
       [](onnx::ModelProto& m) { node_of(m, "Relu").set_domain("com.microsoft"); },
       {"(Relu): domain \"com.microsoft\" is not supported"}},
      {"opset 18",
       [](onnx::ModelProto& m) { m.mutable_opset_import(0)->set_version(18); },
       {"opset 18", "opsets 11 to 17"}},
      {"opset 10", [](onnx::ModelProto& m) { m.mutable_opset_import(0)->set_version(10); }, {"opset 10"}},
      {"a dynamic height",
       [](onnx::ModelProto& m) {
         m.mutable_graph()
             ->mutable_input(0)
             ->mutable_type()
             ->mutable_tensor_type()
             ->mutable_shape()
             ->mutable_dim(2)
             ->set_dim_param("h");
       },
       {"input \"input\": dimension 2 is dynamic (\"h\")"}},
      {"an int64 input",
       [](onnx::ModelProto& m) {
         m.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->set_elem_type(
             onnx::TensorProto_DataType_INT64);
       },
       {"input \"input\": expected a float32 tensor"}},
      {"a weight shorter than its shape",
       [](onnx::ModelProto& m) {
         onnx::TensorProto* w = &conv1_weight(m);
         w->set_raw_data(w->raw_data().substr(0, w->raw_data().size() - 4));
       },
       {"(Conv): weight", "bytes; its shape [2,1,3,3] needs 72"}},
      {"a weight that claims 2^40 elements",
       [](onnx::ModelProto& m) { conv1_weight(m).set_dims(0, int64_t{1} << 40); },
       {"(Conv): constant", "elements"}},
      {"a weight stored outside the file",
       [](onnx::ModelProto& m) {
         conv1_weight(m).set_data_location(onnx::TensorProto_DataLocation_EXTERNAL);
       },
       {"stored outside the file"}},
      {"a weight of int32",
       [](onnx::ModelProto& m) { conv1_weight(m).set_data_type(onnx::TensorProto_DataType_INT32); },
       {"(Conv): weight", "expected float32"}},
      {"a NaN weight",
       [](onnx::ModelProto& m) {
         onnx::TensorProto* w = &conv1_weight(m);
         std::string raw = w->raw_data();
         const float nan = std::nanf("");
         std::memcpy(raw.data(), &nan, 4);
         w->set_raw_data(raw);
       },
       {"(Conv): weight", "a model's values are finite"}},
      {"a dangling input",
       [](onnx::ModelProto& m) { node_of(m, "Relu").set_input(0, "nowhere"); },
       {"(Relu): reads \"nowhere\", which no earlier node"}},
      {"a cycle",
       [](onnx::ModelProto& m) {
         onnx::NodeProto& conv = node_of(m, "Conv");
         conv.set_input(0,
                        node_of(m, "Relu").output(0));  // the first conv reads what the relu after it writes
       },
       {"(Conv): reads", "which no earlier node"}},
      {"a value written twice",
       [](onnx::ModelProto& m) { node_of(m, "Relu").set_output(0, node_of(m, "Conv").output(0)); },
       {"(Relu): writes", "a second time"}},
      {"a non-square kernel",
       [](onnx::ModelProto& m) {
         onnx::TensorProto* w = &conv1_weight(m);
         w->set_dims(2, 1);
         w->set_dims(3, 9);
       },
       {"(Conv): kernel 1x9: qforge's convolutions are square"}},
      {"asymmetric padding",
       [](onnx::ModelProto& m) {
         for (onnx::AttributeProto& a : *node_of(m, "Conv").mutable_attribute())
           if (a.name() == "pads") a.set_ints(2, 0);
       },
       {"(Conv): pads [1,1,0,1]", "the same value along height and width and at both ends"}},
      {"a ceil-mode pool",
       [](onnx::ModelProto& m) {
         for (onnx::AttributeProto& a : *node_of(m, "AveragePool").mutable_attribute())
           if (a.name() == "ceil_mode") a.set_i(1);
       },
       {"(AveragePool): ceil_mode 1 is not supported"}},
      {"an attribute of the wrong type",
       [](onnx::ModelProto& m) {
         for (onnx::AttributeProto& a : *node_of(m, "Conv").mutable_attribute())
           if (a.name() == "group") a.set_type(onnx::AttributeProto_AttributeType_FLOAT);
       },
       {"(Conv): attribute group has type"}},
      {"a node off the path",
       [](onnx::ModelProto& m) {
         onnx::NodeProto* extra = m.mutable_graph()->add_node();
         extra->set_op_type("Relu");
         extra->set_name("stray");
         extra->add_input(node_of(m, "Conv").output(0));
         extra->add_output("stray_out");
       },
       {"(Relu): and another node both read", "reaches the output without joining the other"}},
      {"two outputs",
       [](onnx::ModelProto& m) { m.mutable_graph()->add_output()->set_name("x"); },
       {"2 outputs; qforge imports models of one output"}},
      {"a value feeding three nodes",
       [](onnx::ModelProto& m) {
         for (int k = 0; k < 2; ++k) {
           onnx::NodeProto* extra = m.mutable_graph()->add_node();
           extra->set_op_type("Relu");
           extra->add_input(node_of(m, "Conv").output(0));
           extra->add_output("extra" + std::to_string(k));
         }
       },
       {"feeds 3 nodes"}},
  };
  for (const Case& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    onnx::ModelProto model = parse_model(tiny_torch());
    c.edit(model);
    std::string message;
    try {
      import_onnx(bytes_of(model), "edited.onnx");
    } catch (const Error& error) {
      message = error.what();
    }
    CAPTURE(message);
    REQUIRE(!message.empty());
    CHECK(message.rfind("edited.onnx: ", 0) == 0);
    for (const std::string& part : c.message) CHECK(message.find(part) != std::string::npos);
  }
  // Every truncation of a real file: one error naming the file (protobuf stops most; what parses is checked).
  const std::string bytes = tiny_torch();
  for (std::size_t size = 0; size < bytes.size(); size += 7) {
    CAPTURE(size);
    try {
      import_onnx(bytes.substr(0, size), "cut.onnx");
      FAIL("a truncated file imported");
    } catch (const Error& error) {
      CHECK(std::string(error.what()).rfind("cut.onnx: ", 0) == 0);
    }
  }
  // A QDQ model is not a float model: refused by its first node.
  Generator generator(2);
  CHECK_THROWS_WITH_AS(
      import_onnx(read_file(QFORGE_SOURCE_DIR "/tests/fuzz/corpus/onnx/qdq.onnx"), "qdq.onnx"),
      doctest::Contains("(QuantizeLinear): not supported"), Error);
}
