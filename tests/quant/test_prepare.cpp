#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/lstm.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "nn/zoo.h"
#include "quant/prepare.h"
#include "tests/gradcheck.h"

using namespace qforge;
using namespace qforge::quant;
using qforge::testing::all_close;
using qforge::testing::check_gradients;
using qforge::testing::random_leaf;

namespace {
QuantSpec defaults() { return parse_quant_spec(nullptr, "test.json"); }

std::shared_ptr<QatConv2d> conv_bn_relu(Generator& generator) {
  auto conv = std::make_shared<nn::Conv2d>(3, 4, 3, Conv2dOptions::square(1, 1), true, generator);
  auto bn = std::make_shared<nn::BatchNorm2d>(4);
  for (int c = 0; c < 4; ++c) {  // non-trivial statistics and affine parameters
    bn->running_mean.data()[c] = 0.1f * c - 0.1f;
    bn->running_var.data()[c] = 0.5f + 0.3f * c;
    bn->weight.data()[c] = 0.8f + 0.2f * c;
    bn->bias.data()[c] = 0.05f * c;
  }
  return std::make_shared<QatConv2d>(conv, bn, true, defaults().defaults);
}
}  // namespace

TEST_CASE(
    "prepare fuses conv-bn-relu and linear-relu and inserts fake quantizers where the runtime quantizes") {
  Generator generator(1);
  auto lenet = nn::build_zoo_model("lenet", generator);
  auto prepared = prepare_qat(lenet, defaults());
  auto& layers = prepared->model->children();
  CHECK(layers[0].second->type_name() == "QatConvBnReLU2d");
  CHECK(layers[1].second->type_name() == "Identity");
  CHECK(layers[2].second->type_name() == "Identity");
  CHECK(layers[3].second->type_name() == "MaxPool2d");
  CHECK(layers[9].second->type_name() == "QatLinearReLU");
  CHECK(layers[11].second->type_name() == "QatLinear");
  CHECK(count_fake_quantizers(*prepared) == 9);  // input + (weight, output) × 4 layers
  CHECK(prepared->forward(Tensor::randn({2, 1, 28, 28}, generator)).shape() == Shape{2, 10});

  auto resnet = prepare_qat(nn::build_zoo_model("resnet8", generator), defaults());
  // input, stem (2), 3 blocks × 2 convs (4 each... 2 per conv), 2 shortcuts (2 each), 3 block outputs, fc (2)
  CHECK(count_fake_quantizers(*resnet) == 1 + 2 + 3 * 4 + 2 * 2 + 3 + 2);
  CHECK(resnet->forward(Tensor::randn({2, 1, 28, 28}, generator)).shape() == Shape{2, 10});
}

TEST_CASE("BN folding: the fused module equals conv -> BN -> ReLU, and its folded conv in evaluation") {
  Generator generator(2);
  auto fused = conv_bn_relu(generator);
  set_fake_quant(*fused, false);
  Tensor x = Tensor::randn({2, 3, 6, 5}, generator);
  NoGradGuard no_grad;
  // Evaluation: running statistics.
  fused->eval();
  Tensor expected = relu(batch_norm(conv2d(x, fused->conv->weight, fused->conv->bias, fused->conv->options),
                                    fused->bn->running_mean, fused->bn->running_var, fused->bn->weight,
                                    fused->bn->bias, false));
  CHECK(all_close(fused->forward(x), expected, 1e-5, 1e-5));
  auto [weight, bias] = fused->folded_weight_and_bias();
  CHECK(all_close(relu(conv2d(x, weight, bias, fused->conv->options)), expected, 1e-5, 1e-5));
  // Training: batch statistics (the 1/f rescaling cancels the folding exactly).
  fused->train();
  fused->bn->momentum = 0.0f;
  Tensor mean_copy = fused->bn->running_mean.clone(), var_copy = fused->bn->running_var.clone();
  Tensor training = relu(batch_norm(conv2d(x, fused->conv->weight, fused->conv->bias, fused->conv->options),
                                    mean_copy, var_copy, fused->bn->weight, fused->bn->bias, true, 0.0f));
  CHECK(all_close(fused->forward(x), training, 1e-4, 1e-5));
}

TEST_CASE("BN folding with a pruned channel (gamma 0): finite in training, and the channel outputs beta") {
  Generator generator(4);
  auto fused = conv_bn_relu(generator);
  fused->has_relu = false;
  fused->bn->weight.data()[2] = 0.0f;
  fused->bn->bias.data()[2] = 0.25f;
  const Tensor x = Tensor::randn({4, 3, 6, 5}, generator);
  fused->train();
  const Tensor y = fused->forward(x);
  for (int64_t i = 0; i < y.numel(); ++i) REQUIRE(std::isfinite(y.data()[i]));
  for (int64_t c = 0; c < 4; ++c) {
    CHECK(std::isfinite(fused->bn->running_mean.data()[c]));
    CHECK(std::isfinite(fused->bn->running_var.data()[c]));
  }
  fused->eval();
  const Tensor z = fused->forward(x);
  const int64_t plane = 6 * 5;
  for (int64_t n = 0; n < 4; ++n)
    for (int64_t p = 0; p < plane; ++p)  // within one output level of beta
      CHECK(std::abs(z.data()[(n * 4 + 2) * plane + p] - 0.25f) <= fused->output_quant->qparams().scale[0]);
  auto [weight, bias] = fused->folded_weight_and_bias();
  CHECK(bias.data()[2] == 0.25f);
}

TEST_CASE("gradients flow through BN folding to conv and BN parameters") {
  Generator generator(3);
  auto fused = conv_bn_relu(generator);
  set_fake_quant(*fused, false);
  fused->bn->momentum = 0.0f;  // running statistics stay put between evaluations
  fused->has_relu = false;     // no kink for finite differences
  std::vector<Tensor> inputs{random_leaf({2, 3, 5, 4}, 4), fused->conv->weight, fused->bn->weight,
                             fused->bn->bias};
  CHECK(check_gradients([&](const std::vector<Tensor>& in) { return fused->forward(in[0]); }, inputs));
}

TEST_CASE("fake quantization is active after prepare and outputs lie on the quantization grid") {
  Generator generator(4);
  auto prepared = prepare_qat(nn::build_zoo_model("jermmy", generator), defaults());
  Tensor logits = prepared->forward(Tensor::randn({4, 1, 28, 28}, generator));
  auto last = std::dynamic_pointer_cast<QatLinear>(prepared->model->children().back().second);
  REQUIRE(last);
  QuantParams params = last->output_quant->qparams();
  for (float v : logits.to_vector()) {
    const double level = v / params.scale[0] + params.zero_point[0];
    CHECK(std::abs(level - std::nearbyint(level)) < 1e-3);
    CHECK((level >= -1e-3 && level <= 255 + 1e-3));
  }
}

TEST_CASE("observer switches: frozen observers keep their parameters; evaluation never observes") {
  Generator generator(5);
  auto prepared = prepare_qat(nn::build_zoo_model("jermmy", generator), defaults());
  prepared->forward(Tensor::randn({4, 1, 28, 28}, generator));
  const QuantParams before = prepared->input_quant->qparams();
  prepared->eval();
  prepared->forward(Tensor::randn({4, 1, 28, 28}, generator, 0, 10));
  CHECK(prepared->input_quant->qparams().scale == before.scale);  // eval: not observed
  prepared->train();
  set_observers(*prepared, false);
  prepared->forward(Tensor::randn({4, 1, 28, 28}, generator, 0, 10));
  CHECK(prepared->input_quant->qparams().scale == before.scale);  // frozen
  set_observers(*prepared, true);
  prepared->forward(Tensor::randn({4, 1, 28, 28}, generator, 0, 10));
  CHECK(prepared->input_quant->qparams().scale != before.scale);
}

TEST_CASE("per-layer overrides: float layers stay float, named layers get their own bits") {
  Generator generator(6);
  QuantSpec config = parse_quant_spec(nlohmann::json::parse(R"({
      "overrides": [{"type": "Linear", "float": true}, {"name": "0", "weight": {"bits": 4}}]})"),
                                      "test.json");
  auto prepared = prepare_qat(nn::build_zoo_model("jermmy", generator), config);
  auto& layers = prepared->model->children();
  // Kept in float: float weights (no weight quantizer); as the network's last layer its
  // output stays float too.
  auto head = std::dynamic_pointer_cast<QatLinear>(layers.back().second);
  REQUIRE(head);
  CHECK(head->type_name() == "FloatLinear");
  CHECK(head->weight_quant == nullptr);
  CHECK(head->output_quant == nullptr);
  auto first = std::dynamic_pointer_cast<QatConv2d>(layers[0].second);
  REQUIRE(first);
  CHECK(first->weight_quant->spec().scheme.bits == 4);
  auto second = std::dynamic_pointer_cast<QatConv2d>(layers[3].second);
  REQUIRE(second);
  CHECK(second->weight_quant->spec().scheme.bits == 8);
  CHECK(prepared->input_quant->spec().scheme.bits == 8);
  QuantSpec input_override = parse_quant_spec(
      nlohmann::json::parse(
          R"({"activation": {"bits": 4}, "overrides": [{"name": "input", "activation": {"bits": 8}}]})"),
      "test.json");
  auto four = prepare_qat(nn::build_zoo_model("jermmy", generator), input_override);
  CHECK(four->input_quant->spec().scheme.bits == 8);
  CHECK(std::dynamic_pointer_cast<QatConv2d>(four->model->children()[0].second)
            ->output_quant->spec()
            .scheme.bits == 4);
}

TEST_CASE("the override name \"output\" sets the network output's quantizer: the last layer's") {
  Generator generator(16);
  auto prepare = [&](const std::string& model, const char* overrides) {
    return prepare_qat(nn::build_zoo_model(model, generator),
                       parse_quant_spec(nlohmann::json::parse(std::string(R"({"weight": {"bits": 4},
                           "activation": {"bits": 4}, "overrides": )") +
                                                              overrides + "}"),
                                        "test.json"));
  };
  auto lenet = prepare("lenet", R"([{"name": "output", "activation": {"bits": 8}}])");
  auto last = std::dynamic_pointer_cast<QatLinear>(lenet->model->children()[11].second);
  REQUIRE(last);
  CHECK(last->output_quant->spec().scheme.bits == 8);
  CHECK(last->weight_quant->spec().scheme.bits == 4);  // only the output changes
  auto hidden = std::dynamic_pointer_cast<QatLinear>(lenet->model->children()[9].second);
  CHECK(hidden->output_quant->spec().scheme.bits == 4);
  // 16 levels would leave at most 16 distinct logits; 8 bits give more.
  Tensor x = Tensor::randn({64, 1, 28, 28}, generator);
  std::vector<float> logits = lenet->forward(x).to_vector();
  std::sort(logits.begin(), logits.end());
  CHECK(std::unique(logits.begin(), logits.end()) - logits.begin() > 16);

  // "float": no quantizer on the output (one fewer), logits straight from the layer.
  auto resnet = prepare("resnet8", R"([{"name": "output", "float": true}])");
  CHECK(count_fake_quantizers(*resnet) == 1 + 2 + 3 * 4 + 2 * 2 + 3 + 2 - 1);
  std::vector<QatLinear*> linears;
  for (auto& [name, module] : resnet->named_modules())
    if (auto* fc = dynamic_cast<QatLinear*>(module)) linears.push_back(fc);
  REQUIRE(linears.size() == 1);
  CHECK(linears[0]->output_quant == nullptr);
  std::vector<float> float_logits = resnet->forward(Tensor::randn({8, 1, 28, 28}, generator)).to_vector();
  std::sort(float_logits.begin(), float_logits.end());
  CHECK(std::unique(float_logits.begin(), float_logits.end()) - float_logits.begin() > 16);
  CHECK_THROWS_WITH_AS(
      prepare_qat(
          std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{std::make_shared<nn::ReLU>()}),
          parse_quant_spec(nlohmann::json::parse(R"({"overrides": [{"name": "output", "float": true}]})"),
                           "test.json")),
      doctest::Contains("\"output\" names the last quantized conv or linear layer"), Error);
  CHECK_THROWS_WITH_AS(prepare("lenet", R"([{"name": "input", "float": true}])"),
                       doctest::Contains("the network input is always quantized"), Error);
}

TEST_CASE("a layer kept in float computes in float and quantizes its output for the next integer layer") {
  Generator generator(17);
  auto prepared = prepare_qat(
      nn::build_zoo_model("lenet", generator),
      parse_quant_spec(nlohmann::json::parse(R"({"overrides": [{"name": "4", "float": true}]})"), "t.json"));
  auto middle = std::dynamic_pointer_cast<QatConv2d>(prepared->model->children()[4].second);
  REQUIRE(middle);
  CHECK(middle->type_name() == "FloatConvBnReLU2d");
  CHECK(middle->weight_quant == nullptr);
  REQUIRE(middle->output_quant);
  prepared->train();
  prepared->forward(Tensor::randn({8, 1, 28, 28}, generator));  // observe
  prepared->eval();
  // Its output lies on the output quantizer's grid, so the next layer sees integers.
  Tensor x = Tensor::randn({4, 1, 28, 28}, generator);
  Tensor y =
      middle->forward(prepared->model->children()[0].second->forward(prepared->input_quant->forward(x)));
  const QuantParams p = middle->output_quant->qparams();
  for (float v : y.to_vector()) {
    const double level = v / p.scale[0] + p.zero_point[0];
    CHECK(std::abs(level - std::nearbyint(level)) < 1e-3);
  }
}

TEST_CASE("average pools re-round onto their input's grid, as the integer pool does") {
  Generator generator(18);
  auto prepared = prepare_qat(nn::build_zoo_model("resnet8", generator), defaults());
  QatAvgPool2d* pool = nullptr;
  for (auto& [name, module] : prepared->named_modules())
    if (auto* p = dynamic_cast<QatAvgPool2d*>(module)) pool = p;
  REQUIRE(pool);
  CHECK(pool->type_name() == "QatAdaptiveAvgPool2d");
  prepared->train();
  prepared->forward(Tensor::randn({8, 1, 28, 28}, generator));
  prepared->eval();
  // The pool's input comes from the last block's output quantizer, which is its source.
  const QuantParams p = pool->source->qparams();
  Tensor averaged = pool->forward(mul(Tensor::uniform({2, 64, 7, 7}, generator, 0, 1), p.scale[0] * 40));
  for (float v : averaged.to_vector()) {
    const double level = v / p.scale[0] + p.zero_point[0];
    CHECK(std::abs(level - std::nearbyint(level)) < 1e-3);
  }
}

TEST_CASE("a prepared model's checkpoint restores observers and quantization parameters") {
  Generator generator(7);
  // The default observers, the histogram observer and the max calibrator (which keeps
  // only a running max) all continue from their saved state.
  const char* configs[] = {
      "{}", R"({"activation": {"observer": "histogram"}})",
      R"({"activation": {"observer": "max", "symmetric": true}, "weight": {"observer": "max"}})"};
  for (const char* text : configs) {
    CAPTURE(text);
    QuantSpec config = parse_quant_spec(nlohmann::json::parse(text), "t.json");
    auto a = prepare_qat(nn::build_zoo_model("jermmy", generator), config);
    a->forward(Tensor::randn({4, 1, 28, 28}, generator, 0, 3));
    const std::string path = (std::filesystem::temp_directory_path() / "qforge_prepared.qf").string();
    a->save(path);
    auto b = prepare_qat(nn::build_zoo_model("jermmy", generator), config);
    b->load(path);
    CHECK(b->input_quant->qparams().scale == a->input_quant->qparams().scale);
    // The restored observer continues from the saved state, as the original does.
    Tensor x = Tensor::randn({4, 1, 28, 28}, generator, 0, 1);  // smaller: a forgotten max would show
    a->forward(x), b->forward(x);
    CHECK(b->input_quant->qparams().scale == a->input_quant->qparams().scale);
    std::filesystem::remove(path);
  }
}

TEST_CASE("learnable quantizers train their scale") {
  Generator generator(8);
  QuantSpec config =
      parse_quant_spec(nlohmann::json::parse(R"({"activation": {"learnable": true}})"), "t.json");
  auto prepared = prepare_qat(nn::build_zoo_model("jermmy", generator), config);
  Tensor x = Tensor::randn({8, 1, 28, 28}, generator);
  Tensor targets = Tensor::from_data<int32_t>({8}, std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
  cross_entropy(prepared->forward(x), targets).backward();
  bool has_scale_gradient = false;
  for (auto& [name, p] : prepared->named_parameters())
    if (name.find("output_quant.scale") != std::string::npos) has_scale_gradient |= p.grad().defined();
  CHECK(has_scale_gradient);

  // Symmetric learnable weights learn their scales but keep zero point 0 (a buffer, not a
  // parameter); affine activations learn both.
  QuantSpec both = parse_quant_spec(
      nlohmann::json::parse(R"({"weight": {"learnable": true}, "activation": {"learnable": true}})"),
      "t.json");
  auto lsq = prepare_qat(nn::build_zoo_model("lenet", generator), both);
  lsq->forward(x);  // initializes the learnable parameters from the observers
  std::map<std::string, std::vector<float>> initial;
  for (auto& [name, p] : lsq->named_parameters())
    if (name.find("quant.scale") != std::string::npos) initial[name] = p.to_vector();
  for (int step = 0; step < 5; ++step) {  // plain SGD steps
    lsq->zero_grad();
    cross_entropy(lsq->forward(x), targets).backward();
    for (Tensor& p : lsq->parameters())
      if (p.grad().defined())
        for (int64_t i = 0; i < p.numel(); ++i) p.data()[i] -= 0.5f * p.grad().data()[i];
  }
  // The scales moved: every learnable scale of the network was trained.
  REQUIRE(initial.size() >= 5);
  int moved = 0;
  for (auto& [name, p] : lsq->named_parameters())
    if (initial.count(name)) moved += p.to_vector() != initial[name];
  CHECK(moved == static_cast<int>(initial.size()));
  int weight_scales = 0, activation_zero_points = 0;
  for (auto& [name, p] : lsq->named_parameters()) {
    CHECK(name.find("weight_quant.zero_point") == std::string::npos);
    weight_scales += name.find("weight_quant.scale") != std::string::npos;
    activation_zero_points += name.find("output_quant.zero_point") != std::string::npos;
  }
  CHECK(weight_scales == 4);
  CHECK(activation_zero_points == 4);
  for (auto& [name, b] : lsq->named_buffers())
    if (name.find("weight_quant.zero_point") != std::string::npos)
      for (float z : b.to_vector()) CHECK(z == 0.0f);
  // Once initialized, a learnable quantizer's observer stops: a wider batch moves neither
  // the observer nor the (learned) parameters.
  const float observed_max = lsq->input_quant->state_dict().at("observer_max").item();
  const float learned_scale = lsq->input_quant->qparams().scale[0];
  lsq->forward(mul(x, 10.0f));
  CHECK(lsq->input_quant->state_dict().at("observer_max").item() == observed_max);
  CHECK(lsq->input_quant->qparams().scale[0] == learned_scale);
  // Calibration (observers on in eval mode, as PTQ runs it) follows the observer over
  // every batch, learnable or not: both give the same parameters.
  QuantSpec fixed = parse_quant_spec(nullptr, "t.json");
  Generator init(9);
  auto a = prepare_qat(nn::build_zoo_model("lenet", init), both);
  auto b = prepare_qat(nn::build_zoo_model("lenet", init), fixed);
  for (auto* model : {a.get(), b.get()}) {
    model->eval();
    set_observers(*model, true, /*even_in_eval=*/true);
    for (float spread : {1.0f, 3.0f, 0.5f}) model->forward(mul(x, spread));
  }
  CHECK(a->input_quant->qparams().scale == b->input_quant->qparams().scale);
  CHECK(a->input_quant->qparams().zero_point == b->input_quant->qparams().zero_point);
}

TEST_CASE("quant config errors name the key") {
  auto error_of = [](const char* text) {
    try {
      parse_quant_spec(nlohmann::json::parse(text), "c.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(error_of(R"({"weight": {"bits": 17}})") == "c.json: quant.weight.bits: expected 1..16, got 17");
  CHECK(error_of(R"({"activation": {"per_channel": true}})") ==
        "c.json: quant.activation.per_channel: activations are quantized per tensor");
  // The stages' settings (quant.qat, quant.ptq) are train's: tests/train/test_train.cpp.
  CHECK(error_of(R"({"qat": {"epoch": 1}})").find("c.json: quant.qat: unknown key") == 0);
  CHECK(error_of(R"({"weight": {"observer": "kl"}})").find("quant.weight.observer: expected one of") !=
        std::string::npos);
}

TEST_CASE("LSTM QAT: quantizers inside the recurrence; without fake quantization it is the float LSTM") {
  Generator generator(9);
  auto model = nn::build_zoo_model("lstm", generator);
  Tensor x = Tensor::randn({3, 1, 28, 28}, generator);
  Tensor expected = model->forward(x);
  auto prepared = prepare_qat(model, defaults());
  auto classifier = std::dynamic_pointer_cast<nn::LstmClassifier>(prepared->model);
  REQUIRE(classifier);
  CHECK(classifier->lstm->type_name() == "QatLSTM");
  CHECK(classifier->fc->type_name() == "QatLinear");
  CHECK(count_fake_quantizers(*prepared) == 1 + 4 + 2);  // input; W_ih, W_hh, gates, hidden; fc
  set_fake_quant(*prepared, false);
  CHECK(all_close(prepared->forward(x), expected, 1e-4, 1e-5));
  set_fake_quant(*prepared, true);
  Tensor targets = Tensor::from_data<int32_t>({3}, std::vector<int32_t>{1, 2, 3});
  Tensor loss = cross_entropy(prepared->forward(x), targets);
  loss.backward();
  for (auto& [name, p] : prepared->named_parameters()) {
    const std::string captured_name(name);
    CAPTURE(captured_name);
    CHECK(p.grad().defined());
  }
  CHECK(std::abs(loss.item() - cross_entropy(expected, targets).item()) < 0.1f);  // 8 bits: close, not equal
}

TEST_CASE("an override naming no layer or type of the model is an error, not a silent no-op") {
  Generator generator(19);
  auto prepare = [&](const char* overrides) {
    return prepare_qat(
        nn::build_zoo_model("lenet", generator),
        parse_quant_spec(nlohmann::json::parse(std::string(R"({"overrides": )") + overrides + "}"),
                         "t.json"));
  };
  CHECK_THROWS_WITH_AS(prepare(R"([{"name": "layers.0", "float": true}])"),
                       doctest::Contains("quant.overrides.0: name \"layers.0\" is no layer of this model"),
                       Error);
  CHECK_THROWS_WITH_AS(prepare(R"([{"name": "0", "float": true}, {"type": "Conv", "float": true}])"),
                       doctest::Contains("quant.overrides.1: type \"Conv\" is no layer type"), Error);
  CHECK(prepare(R"([{"name": "9", "weight": {"bits": 4}}, {"type": "Linear", "float": true}])"));
  // A layer without quantization of its own cannot be kept in float: named, not ignored.
  CHECK_THROWS_WITH_AS(
      prepare(R"([{"name": "3", "float": true}])"),
      doctest::Contains("quant.overrides.0: \"3\" is a MaxPool2d, which has no quantization of its "
                        "own"),
      Error);
  CHECK_THROWS_WITH_AS(prepare(R"([{"name": "1", "float": true}])"),
                       doctest::Contains("\"1\" is a BatchNorm2d, which has no quantization of its own"),
                       Error);
  CHECK_THROWS_WITH_AS(prepare(R"([{"type": "MaxPool2d", "float": true}])"),
                       doctest::Contains("type \"MaxPool2d\" is no layer type with quantization of its own"),
                       Error);
  // What an override can name, from the model itself.
  auto lenet = nn::build_zoo_model("lenet", generator);
  std::vector<std::string> names;
  for (const auto& [name, type] : overridable_layers(*lenet)) names.push_back(name + ":" + type);
  CHECK(names == std::vector<std::string>{"input:Input", "0:Conv2d", "4:Conv2d", "9:Linear", "11:Linear",
                                          "output:Output"});
}
