// The integer model: PyTorch's converted model reproduced layer by layer; convert on the
// zoo models (simulation = deployment, reference = fast, .qfm round trip); the .qfm reader
// against truncation, bit flips and edits; convert's refusals.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>

#include "core/file_io.h"
#include "core/ops.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "nn/zoo.h"
#include "quant/convert.h"
#include "quant/int8/integer_ops.h"
#include "quant/prepare.h"
#include "tests/gradcheck.h"
#include "tests/quant/int8_test_util.h"
#include "tests/reference.h"
#include "tests/temp_folder.h"

using namespace qforge;
using namespace qforge::quant;
using namespace qforge::quant::int8;
using nlohmann::json;

namespace {

std::vector<float> floats(const json& values) {
  std::vector<float> out;
  for (const json& v : values) out.push_back(static_cast<float>(v.get<double>()));
  return out;
}

template <typename T>
Tensor integer_tensor(const Shape& shape, const json& values) {
  std::vector<T> data;
  for (const json& v : values) data.push_back(static_cast<T>(v.get<int64_t>()));
  return Tensor::from_data<T>(shape, data);
}

LayerQuantization layer_from(const json& layer, const ActivationQuant& input, const Shape& weight_shape) {
  LayerQuantization q;
  q.weight = integer_tensor<int8_t>(weight_shape, layer["w_q"]);
  q.weight_scale = floats(layer["w_scale"]);
  q.bias = floats(layer["bias"]);
  q.input = input;
  q.output = ActivationQuant{static_cast<float>(layer["y_scale"].get<double>()),
                             layer["y_zero_point"].get<int32_t>()};
  q.has_relu = layer.value("relu", false);
  return q;
}

// A calibrated, prepared zoo model in eval mode.
std::shared_ptr<QatModel> calibrated(const std::string& name, const QuantSpec& config, Generator& generator) {
  auto prepared = prepare_qat(nn::build_zoo_model(name, generator), config);
  prepared->train();
  NoGradGuard no_grad;
  for (int i = 0; i < 2; ++i) prepared->forward(Tensor::randn({32, 1, 28, 28}, generator));
  prepared->eval();
  return prepared;
}

int64_t argmax_row(const float* row, int64_t n) { return std::max_element(row, row + n) - row; }

}  // namespace

TEST_CASE(
    "PyTorch's converted model (conv-relu, maxpool, conv-relu, flatten, linear) runs exactly, layer by "
    "layer") {
  static const json vectors = qforge::testing::load_reference("torch_int8_vectors.json");
  const json& m = vectors["model"].at(0);
  const ActivationQuant input{static_cast<float>(m["quant"]["scale"].get<double>()),
                              m["quant"]["zero_point"].get<int32_t>()};
  IntegerModel model;
  model.input_shape = {1, 10, 10};
  int x = model.add(std::make_unique<QuantizeOp>(input), {0}, "quant");
  LayerQuantization conv1 = layer_from(m["conv1"], input, {4, 1, 3, 3});
  const ActivationQuant conv1_out = *conv1.output;
  int y1 = model.add(std::make_unique<ConvOp>(std::move(conv1), Conv2dShape{.batch = 0,
                                                                            .in_channels = 1,
                                                                            .in_height = 10,
                                                                            .in_width = 10,
                                                                            .out_channels = 4,
                                                                            .kernel_height = 3,
                                                                            .kernel_width = 3}),
                     {x}, "conv1");
  int pooled =
      model.add(std::make_unique<PoolOp>(PoolOp::Kind::max, PoolGeometry{.window = Pool2dOptions::square(2)}),
                {y1}, "pool");
  LayerQuantization conv2 = layer_from(m["conv2"], conv1_out, {8, 4, 3, 3});
  const ActivationQuant conv2_out = *conv2.output;
  int y2 = model.add(std::make_unique<ConvOp>(std::move(conv2), Conv2dShape{.batch = 0,
                                                                            .in_channels = 4,
                                                                            .in_height = 4,
                                                                            .in_width = 4,
                                                                            .out_channels = 8,
                                                                            .kernel_height = 3,
                                                                            .kernel_width = 3}),
                     {pooled}, "conv2");
  int flat = model.add(std::make_unique<FlattenOp>(), {y2}, "flatten");
  // PyTorch flattens (c, h, w); our flatten is (h, w, c): permute the weight columns, as convert does.
  LayerQuantization fc = layer_from(m["fc"], conv2_out, {10, 32});
  Tensor permuted = Tensor::empty({10, 32}, DType::s8);
  for (int64_t o = 0; o < 10; ++o)
    for (int64_t c = 0; c < 8; ++c)
      for (int64_t p = 0; p < 4; ++p)
        permuted.data_as<int8_t>()[o * 32 + p * 8 + c] = fc.weight.data_as<int8_t>()[o * 32 + c * 4 + p];
  fc.weight = permuted;
  int logits = model.add(std::make_unique<LinearOp>(std::move(fc)), {flat}, "fc");
  model.add(std::make_unique<DequantizeOp>(), {logits}, "dequant");

  const Tensor images = Tensor::from_vector({4, 1, 10, 10}, floats(m["x"]));
  for (Backend backend : {Backend::reference, Backend::fast}) {
    std::vector<Value> values = model.run_all(images, backend);
    auto nchw = [&](int id) {
      const Tensor& t = values[id].data;
      std::vector<uint8_t> bytes(t.data_as<uint8_t>(), t.data_as<uint8_t>() + t.numel());
      return t.dim() == 4 ? qforge::testing::nhwc_to_nchw(bytes, {t.size(0), t.size(3), t.size(1), t.size(2)})
                          : bytes;
    };
    auto expect = [&](const char* key) {
      std::vector<uint8_t> out;
      for (const json& v : m[key]) out.push_back(static_cast<uint8_t>(v.get<int64_t>()));
      return out;
    };
    CAPTURE(static_cast<int>(backend));
    CHECK(nchw(x) == expect("x_q"));
    CHECK(nchw(y1) == expect("conv1_y_q"));
    CHECK(nchw(pooled) == expect("pool_y_q"));
    CHECK(nchw(y2) == expect("conv2_y_q"));
    CHECK(nchw(logits) == expect("fc_y_q"));
    CHECK(values.back().data.to_vector() == floats(m["y"]));
  }
}

TEST_CASE(
    "convert: the integer model agrees with its fake-quant simulation; reference = fast; .qfm round trip") {
  const std::string folder = qforge::testing::fresh_temp_folder("convert");
  struct Case {
    const char* model;
    const char* quant;
  };
  const Case cases[] = {
      {"jermmy", "{}"},
      {"lenet", "{}"},
      {"resnet8", "{}"},
      {"lenet",
       R"({"weight": {"bits": 4}, "activation": {"bits": 4}, "overrides": [{"name": "output", "activation": {"bits": 8}}]})"},
      {"lenet", R"({"activation": {"signed": true}})"},
      {"lenet", R"({"activation": {"symmetric": true, "reduce_range": true}})"},
      {"lenet", R"({"overrides": [{"name": "4", "float": true}, {"name": "11", "float": true}]})"},
      {"resnet8",
       R"({"activation": {"bits": 6, "reduce_range": true}, "weight": {"bits": 5, "per_channel": false}})"},
  };
  Generator generator(11);
  for (const Case& c : cases) {
    const std::string label = std::string(c.model) + " " + c.quant;
    INFO(label);
    auto prepared = calibrated(c.model, parse_quant_spec(json::parse(c.quant), "t.json"), generator);
    IntegerModel model = convert(*prepared, {1, 28, 28});
    const Tensor images = Tensor::randn({32, 1, 28, 28}, generator);
    Tensor simulated;
    {
      NoGradGuard no_grad;
      simulated = prepared->forward(images);
    }
    const Tensor deployed = model.forward(images);
    REQUIRE(deployed.shape() == simulated.shape());
    int64_t same_prediction = 0;
    for (int64_t i = 0; i < 32; ++i)
      same_prediction +=
          argmax_row(deployed.data() + i * 10, 10) == argmax_row(simulated.data() + i * 10, 10);
    CHECK(same_prediction == 32);
    // Bit for bit: the simulation's layers compute the deployed arithmetic (Note [The simulation
    // runs the deployed arithmetic], quant/qat_modules.cpp).
    CHECK(deployed.to_vector() == simulated.to_vector());
    // The reference backend gives the same bytes (on 4 images: plain loops are slow under
    // the sanitizers; tests/quant/test_int8_backends.cpp covers every op's shapes).
    const Tensor few = slice(images, 0, 0, 4);
    CHECK(model.forward(few, Backend::reference).to_vector() == model.forward(few).to_vector());
    // A saved and reloaded model computes the same.
    model.save(folder + "/m.qfm");
    IntegerModel reloaded = IntegerModel::load(folder + "/m.qfm");
    CHECK(reloaded.forward(images).to_vector() == deployed.to_vector());
    CHECK(reloaded.ops().size() == model.ops().size());
  }
}

TEST_CASE(
    "the static integer LSTM on a block of rows per thread: the simulation's bytes on any thread count") {
  // 130 sequences: two blocks of rows with two threads (Note [LSTM inference]), 65 each, a
  // size past the products' tiles; one thread runs all 130 at once.
  Generator generator(15);
  auto prepared = calibrated("lstm", parse_quant_spec(nullptr, "t.json"), generator);
  IntegerModel model = convert(*prepared, {1, 28, 28});
  const Tensor images = Tensor::randn({130, 1, 28, 28}, generator);
  Tensor simulated;
  {
    NoGradGuard no_grad;
    simulated = prepared->forward(images);
  }
  const Tensor two = qforge::testing::with_threads(2, [&] { return model.forward(images); });
  const Tensor one = qforge::testing::with_threads(1, [&] { return model.forward(images); });
  CHECK(two.to_vector() == simulated.to_vector());
  CHECK(one.to_vector() == two.to_vector());
  const Tensor few = slice(images, 0, 0, 3);  // few rows: the inputs' products ahead of the steps
  CHECK(model.forward(few, Backend::reference).to_vector() == model.forward(few).to_vector());
  CHECK(model.forward(few).to_vector() == slice(two, 0, 0, 3).to_vector());
}

TEST_CASE("the dynamic integer LSTM on a block of rows per thread: the same bytes on any thread count") {
  // h's parameters come from the whole batch at every step: two blocks of 65 rows merge their
  // ranges; one thread scans all 130. The reference backend (one thread, plain loops) agrees.
  Generator generator(16);
  nn::ModulePtr lstm = nn::build_zoo_model("lstm", generator);
  lstm->eval();
  const QuantSpec config = parse_quant_spec(json::parse(R"({"mode": "dynamic"})"), "t.json");
  IntegerModel model = convert_dynamic(*lstm, config.defaults.weight, {1, 28, 28});
  Tensor images = Tensor::randn({130, 1, 28, 28}, generator);
  const Tensor two = qforge::testing::with_threads(2, [&] { return model.forward(images); });
  const Tensor one = qforge::testing::with_threads(1, [&] { return model.forward(images); });
  CHECK(one.to_vector() == two.to_vector());
  CHECK(model.forward(images, Backend::reference).to_vector() == two.to_vector());
  const Tensor few = slice(images, 0, 0, 2);  // few rows: the inputs' products ahead of the steps
  CHECK(model.forward(few, Backend::reference).to_vector() == model.forward(few).to_vector());
  images.data()[100 * 784 + 5] = std::numeric_limits<float>::quiet_NaN();  // in the second block
  CHECK_THROWS_WITH_AS(model.forward(images), doctest::Contains("NaN or infinity"), Error);
}

// Predictions of the integer model that match the simulation, of 64 random images.
int64_t agreeing_predictions(QatModel& prepared, const IntegerModel& model, Generator& generator,
                             const Shape& image_shape) {
  Shape batch{64};
  batch.insert(batch.end(), image_shape.begin(), image_shape.end());
  const Tensor images = Tensor::randn(batch, generator);
  Tensor simulated;
  {
    NoGradGuard no_grad;
    simulated = prepared.forward(images);
  }
  const Tensor deployed = model.forward(images);
  REQUIRE(deployed.shape() == simulated.shape());
  const int64_t classes = simulated.size(1);
  int64_t same = 0;
  for (int64_t i = 0; i < 64; ++i)
    same += argmax_row(deployed.data() + i * classes, classes) ==
            argmax_row(simulated.data() + i * classes, classes);
  return same;
}

TEST_CASE(
    "a layer kept in float after a flatten reads the features in the order the integer layers flattened "
    "them") {
  Generator generator(15);
  for (const char* quant : {R"({"overrides": [{"name": "9", "float": true}]})",
                            R"({"overrides": [{"type": "Linear", "float": true}]})"}) {
    INFO(quant);
    auto prepared = calibrated("lenet", parse_quant_spec(json::parse(quant), "t.json"), generator);
    const IntegerModel model = convert(*prepared, {1, 28, 28});
    CHECK(agreeing_predictions(*prepared, model, generator, {1, 28, 28}) >= 62);
  }
  // Through a dropout, after a 2x2 adaptive pool: the features are still (h, w, c).
  auto layers = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(1, 6, 3, Conv2dOptions{}, true, generator), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::AdaptiveAvgPool2d>(2, 2), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Dropout>(0.5f, 3), std::make_shared<nn::Linear>(24, 5, true, generator)});
  auto prepared = prepare_qat(
      layers, parse_quant_spec(json::parse(R"({"overrides": [{"name": "5", "float": true}]})"), "t.json"));
  prepared->train();
  {
    NoGradGuard no_grad;
    for (int i = 0; i < 4; ++i) prepared->forward(Tensor::randn({32, 1, 10, 10}, generator));
  }
  prepared->eval();
  const IntegerModel model = convert(*prepared, {1, 10, 10});
  CHECK(agreeing_predictions(*prepared, model, generator, {1, 10, 10}) >= 62);
  // Logits that are a flattened image would come out in (h, w, c) order: refused, not permuted silently.
  auto image_logits = std::make_shared<nn::Sequential>(
      std::vector<nn::ModulePtr>{std::make_shared<nn::Conv2d>(1, 3, 3, Conv2dOptions{}, true, generator),
                                 std::make_shared<nn::Flatten>()});
  auto flat = prepare_qat(image_logits, parse_quant_spec(nullptr, "t.json"));
  flat->train();
  {
    NoGradGuard no_grad;
    flat->forward(Tensor::randn({8, 1, 4, 4}, generator));
  }
  flat->eval();
  CHECK_THROWS_WITH_AS(convert(*flat, {1, 4, 4}),
                       doctest::Contains("convert: output: the model ends in a flattened"), Error);
}

TEST_CASE("dynamic convert (Linear, LSTM) follows the float model; refuses convolutions") {
  Generator generator(14);
  const QuantSpec config = parse_quant_spec(json::parse(R"({"mode": "dynamic"})"), "t.json");
  CHECK(config.mode == "dynamic");
  nn::ModulePtr lstm = nn::build_zoo_model("lstm", generator);
  lstm->eval();
  IntegerModel model = convert_dynamic(*lstm, config.defaults.weight, {1, 28, 28});
  CHECK(model.ops().size() == 2);  // dynamic_lstm, dynamic_linear
  const Tensor images = Tensor::randn({32, 1, 28, 28}, generator);
  Tensor expected;
  {
    NoGradGuard no_grad;
    expected = lstm->forward(images);
  }
  const Tensor deployed = model.forward(images);
  double worst = 0, largest = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    worst = std::max(worst, double{std::abs(deployed.data()[i] - expected.data()[i])});
    largest = std::max(largest, double{std::abs(expected.data()[i])});
  }
  MESSAGE("dynamic lstm: largest logit difference ", worst, " of logits up to ", largest);
  CHECK(worst < 0.05 * largest);
  CHECK(model.forward(images, Backend::reference).to_vector() == deployed.to_vector());
  const std::string folder = qforge::testing::fresh_temp_folder("dynamic");
  model.save(folder + "/d.qfm");
  CHECK(IntegerModel::load(folder + "/d.qfm").forward(images).to_vector() == deployed.to_vector());
  nn::ModulePtr lenet = nn::build_zoo_model("lenet", generator);
  CHECK_THROWS_WITH_AS(convert_dynamic(*lenet, config.defaults.weight, {1, 28, 28}),
                       doctest::Contains("dynamic quantization covers Linear and LSTM"), Error);
}

TEST_CASE("convert refuses what the integer runtime cannot run, naming the layer") {
  Generator generator(12);
  auto refuse = [&](const char* quant, const char* message) {
    auto prepared = calibrated("lenet", parse_quant_spec(json::parse(quant), "t.json"), generator);
    CHECK_THROWS_WITH_AS(convert(*prepared, {1, 28, 28}), doctest::Contains(message), ConvertError);
  };
  refuse(R"({"weight": {"bits": 1}})", "1-bit signed weights");
  refuse(R"({"weight": {"bits": 9}})", "9-bit signed weights");
  refuse(R"({"activation": {"bits": 9}})", "9-bit activations");
  refuse(R"({"weight": {"symmetric": false}})", "needs symmetric weights");
  auto uncalibrated =
      prepare_qat(nn::build_zoo_model("lenet", generator), parse_quant_spec(nullptr, "t.json"));
  CHECK_THROWS_WITH_AS(convert(*uncalibrated, {1, 28, 28}), doctest::Contains("never seen"), ConvertError);
  // A diverged model is no refusal of the runtime but a failure: the finiteness gate names the value.
  auto diverged = calibrated("lenet", parse_quant_spec(nullptr, "t.json"), generator);
  diverged->state_dict().at("model.0.conv.bias").data()[3] = std::numeric_limits<float>::infinity();
  try {
    convert(*diverged, {1, 28, 28});
    FAIL("convert accepted an infinite bias");
  } catch (const ConvertError&) {
    FAIL("a diverged model is reported as a refusal of the runtime");
  } catch (const Error& error) {
    CHECK(std::string(error.what()) ==
          "convert: model.0.conv.bias holds inf at index 3; the model diverged — nothing was converted");
  }
}

TEST_CASE(".qfm files: every truncation, every flipped bit and hand edits are errors naming the file") {
  const std::string folder = qforge::testing::fresh_temp_folder("qfm");
  Generator generator(13);
  // A small model with every kind of field: conv (grouped), relu, pools, flatten, linear.
  auto small = std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(1, 4, 3, Conv2dOptions{}, true, generator), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::MaxPool2d>(Pool2dOptions::square(2)),
      std::make_shared<nn::Conv2d>(4, 4, 3, Conv2dOptions::square(1, 1, 1, 2), true, generator),
      std::make_shared<nn::AvgPool2d>(Pool2dOptions::square(2)), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(4 * 3 * 3, 3, true, generator)});
  auto prepared = prepare_qat(small, parse_quant_spec(nullptr, "t.json"));
  prepared->train();
  {
    NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) prepared->forward(Tensor::randn({8, 1, 14, 14}, generator));
  }
  prepared->eval();
  IntegerModel model = convert(*prepared, {1, 14, 14});
  const std::string path = folder + "/small.qfm";
  model.save(path);
  const std::string bytes = read_file(path);
  const TensorFile file = parse_tensor_file(bytes, path);
  // Truncation at every offset.
  for (std::size_t length = 0; length < bytes.size(); length += 1) {
    CAPTURE(length);
    CHECK_THROWS_AS(IntegerModel::from_file(parse_tensor_file(bytes.substr(0, length), path), path), Error);
  }
  // Bit flips everywhere: the header (scales, shapes) and every blob.
  for (std::size_t at = 0; at < bytes.size(); at += 3) {
    std::string flipped = bytes;
    flipped[at] = static_cast<char>(flipped[at] ^ (1 << (at % 8)));
    CAPTURE(at);
    CHECK_THROWS_AS(IntegerModel::from_file(parse_tensor_file(flipped, path), path), Error);
  }
  // Hand edits that keep the checksums valid (re-saved): each field is checked.
  auto edited = [&](const std::function<void(json&)>& edit, const char* message) {
    TensorFile copy = file;
    edit(copy.metadata);
    CHECK_THROWS_WITH_AS(IntegerModel::from_file(copy, path), doctest::Contains(message), Error);
  };
  edited([](json& m) { m["format_version"] = 3; }, "format version 3");
  edited([](json& m) { m["format_version"] = 1; }, "format version 1; this qforge reads version 2 — convert");
  edited([](json& m) { m["ops"][1]["stride"] = {0, 1}; }, "ops.1.stride");
  edited([](json& m) { m["ops"][1]["input"]["scale"] = -1; }, "ops.1.input.scale");
  edited([](json& m) { m["ops"][1]["input"]["zero_point"] = 300; }, "ops.1.input.zero_point");
  edited([](json& m) { m["ops"][1]["out_channels"] = 41; },
         "tensor \"weight\" is s8 [4,1,3,3], expected s8 [41,1,3,3]");
  edited([](json& m) { m["ops"][2]["inputs"] = {5}; }, "ops.2.inputs");
  edited([](json& m) { m["ops"][1]["op"] = "winograd"; }, "ops.1.op");
  edited([](json& m) { m["ops"][1]["surprise"] = 1; }, "ops.1.surprise");
  edited([](json& m) { m["kind"] = "checkpoint"; }, "not an integer model");
  TensorFile extra = file;
  extra.tensors["ops.0.stray"] = Tensor::zeros({2});
  CHECK_THROWS_WITH_AS(IntegerModel::from_file(extra, path), doctest::Contains("ops.0"), Error);

  // Values that pass a field's type but not its meaning.
  auto edited_file = [&](const std::function<void(TensorFile&)>& edit, const char* message) {
    TensorFile copy = file;
    edit(copy);
    CHECK_THROWS_WITH_AS(IntegerModel::from_file(copy, path), doctest::Contains(message), Error);
  };
  edited([](json& m) { m["ops"][1]["input"]["scale"] = 1e-40; },
         "ops.1.input.scale: expected a finite scale >= 1.19e-07");
  edited_file(
      [](TensorFile& f) {
        Tensor scale = f.tensors.at("ops.1.weight_scale").clone();
        scale.data()[2] = 1e-40f;
        f.tensors["ops.1.weight_scale"] = scale;
      },
      "is not a finite scale >= 1.19e-07 (FLT_EPSILON)");
  edited_file(
      [](TensorFile& f) {
        Tensor bias = f.tensors.at("ops.3.bias").clone();
        bias.data()[1] = std::numeric_limits<float>::quiet_NaN();
        f.tensors["ops.3.bias"] = bias;
      },
      "tensor \"bias\" holds nan at index 1");
  edited_file([](TensorFile& f) { f.tensors.erase("ops.3.bias"); }, "ops.3: tensor \"bias\" is missing");
  edited([](json& m) { m["ops"][3]["bias"] = false; },
         "tensor \"bias\" belongs to no field of this conv2d op");
  edited([](json& m) { m["ops"][3].erase("bias"); }, "ops.3.bias: missing");
  // The graph as a whole (IntegerModel::check): each op gets what it was built for.
  edited(
      [](json& m) {
        m["ops"][3]["in_shape"] = {4, 5, 5};
      },
      "ops.3 (conv2d, 3): it was built for (H,W,C) input [5,5,4], its input is uint8 [6,6,4]");
  edited(
      [](json& m) {
        m["ops"][2]["kernel"] = {3, 3};
        m["ops"][2]["stride"] = {3, 3};
      },
      "ops.3 (conv2d, 3): it was built for (H,W,C) input [6,6,4], its input is uint8 [4,4,4]");
  edited([](json& m) { m["ops"][3]["inputs"] = {2}; },
         "ops.3 (conv2d, 3): it was built for (H,W,C) input [6,6,4], its input is uint8 [12,12,4]");
  edited([](json& m) { m["ops"][3]["inputs"] = {0}; },
         "ops.3 (conv2d, 3): expected a uint8 image (H,W,C), got float");
  edited([](json& m) { m["ops"][1]["output"]["scale"] = 0.5; },
         "ops.3 (conv2d, 3): it was converted for input scale");
  edited([](json& m) { m["ops"][3]["input"]["zero_point"] = 7; },
         "ops.3 (conv2d, 3): it was converted for input scale");
  edited(
      [](json& m) {
        m["ops"][4]["kernel"] = {3, 3};
        m["ops"][4]["stride"] = {3, 3};
      },
      "ops.6 (linear, 6): it was built for 36 input features, its input is uint8 [16]");
  edited([](json& m) { m["ops"].erase(7); }, "ops.6 (linear): the model ends in uint8 [3]");
}

TEST_CASE(".qfm files: a layer kept in float holds finite weights, checked on load") {
  const std::string folder = qforge::testing::fresh_temp_folder("qfm_float");
  Generator generator(16);
  auto prepared = calibrated(
      "lenet", parse_quant_spec(json::parse(R"({"overrides": [{"name": "4", "float": true}]})"), "t.json"),
      generator);
  const IntegerModel model = convert(*prepared, {1, 28, 28});
  const std::string path = folder + "/float.qfm";
  model.save(path);
  TensorFile file = load_tensor_file(path);
  std::string float_op;
  for (std::size_t i = 0; i < file.metadata["ops"].size(); ++i)
    if (file.metadata["ops"][i]["op"] == "float_conv2d") float_op = "ops." + std::to_string(i);
  REQUIRE(!float_op.empty());
  for (const char* what : {".weight", ".bias"}) {
    TensorFile copy = file;
    Tensor t = copy.tensors.at(float_op + what).clone();
    t.data()[0] = std::numeric_limits<float>::infinity();
    copy.tensors[float_op + what] = t;
    CHECK_THROWS_WITH_AS(IntegerModel::from_file(copy, path), doctest::Contains("holds inf at index 0"),
                         Error);
  }
  const Tensor images = Tensor::randn({4, 1, 28, 28}, generator);
  CHECK(IntegerModel::from_file(file, path).forward(images).to_vector() == model.forward(images).to_vector());
}

TEST_CASE(
    "packed weights (Note [Packed weights]): 4- and 2-bit files shrink, round trip exactly, bad packing "
    "named") {
  const std::string folder = qforge::testing::fresh_temp_folder("packed");
  Generator generator(17);
  const Tensor images = Tensor::randn({32, 1, 28, 28}, generator);
  std::map<int, std::uintmax_t> bytes;
  std::map<int, TensorFile> files;
  for (int bits : {8, 4, 3, 2}) {
    INFO("weight bits ", bits);
    const json section = {{"weight", {{"bits", bits}}}};
    auto prepared = calibrated("lenet", parse_quant_spec(section, "t.json"), generator);
    const IntegerModel model = convert(*prepared, {1, 28, 28});
    const std::string path = folder + "/w" + std::to_string(bits) + ".qfm";
    model.save(path);
    bytes[bits] = std::filesystem::file_size(path);
    files[bits] = load_tensor_file(path);
    const IntegerModel reloaded = IntegerModel::load(path);
    CHECK(reloaded.forward(images).to_vector() == model.forward(images).to_vector());
    int packed_ops = 0;
    for (const json& op : files[bits].metadata["ops"])
      if (op.contains("packed_weight")) {
        ++packed_ops;
        CHECK(op["packed_weight"]["bits"] == (bits == 3 ? 4 : bits));
      }
    CHECK(packed_ops == (bits == 8 ? 0 : 4));  // lenet's two convs and two linear layers
  }
  // lenet's file is almost all weights: 4 bits halves it, 2 bits quarters it.
  CHECK(static_cast<double>(bytes[4]) < 0.55 * static_cast<double>(bytes[8]));
  CHECK(bytes[3] < bytes[4] + 16);  // 3-bit codes take 4 bits; only the header's numbers differ
  CHECK(static_cast<double>(bytes[2]) < 0.3 * static_cast<double>(bytes[8]));

  const std::string path = folder + "/edited.qfm";
  auto edited = [&](int bits, const std::function<void(TensorFile&)>& edit, const char* message) {
    TensorFile copy = files[bits];
    copy.tensors["ops.1.weight"] = copy.tensors["ops.1.weight"].clone();
    edit(copy);
    CHECK_THROWS_WITH_AS(IntegerModel::from_file(copy, path), doctest::Contains(message), Error);
  };
  REQUIRE(files[4].metadata["ops"][1]["op"] == "conv2d");
  edited(
      4, [](TensorFile& f) { f.metadata["ops"][1]["packed_weight"]["bits"] = 3; }, "expected 1, 2 or 4");
  // The packed size follows the op's shape: conv 0 as 31 channels needs 31·25 codes.
  edited(
      4, [](TensorFile& f) { f.metadata["ops"][1]["out_channels"] = 31; },
      "tensor \"weight\" is u8 [400], expected u8 [388]");
  edited(
      4, [](TensorFile& f) { f.metadata["ops"][1]["packed_weight"]["surprise"] = 1; },
      "ops.1.packed_weight.surprise");
  edited(
      4,
      [](TensorFile& f) {
        f.metadata["ops"][1]["weight_range"] = {-8, 5};
      },
      "outside the 14 levels");
  edited(
      2,
      [](TensorFile& f) {
        f.metadata["ops"][1]["weight_range"] = {-8, 7};
      },
      "cannot hold the 16 levels");
  // conv 0 has 32·25 = 800 two-bit weights in 200 bytes; as 42 channels of a 19×1 kernel
  // it has 798, and the last byte's top four bits are unused and must be zero.
  edited(
      2,
      [](TensorFile& f) {
        f.metadata["ops"][1]["out_channels"] = 42;
        f.metadata["ops"][1]["kernel"] = {19, 1};
        f.tensors["ops.1.weight"].data_as<uint8_t>()[199] |= 0xf0;
      },
      "unused bits are not zero");
}
