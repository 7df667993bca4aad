#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "core/file_io.h"
#include "core/ops.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/inference.h"
#include "nn/lstm.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "nn/zoo.h"
#include "tests/gradcheck.h"

using namespace qforge;
using namespace qforge::nn;
using qforge::testing::check_gradients;
using qforge::testing::random_leaf;

namespace {
std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("qforge_test_" + name)).string();
}
}  // namespace

TEST_CASE("zoo models produce logits of the right shape and have dotted names") {
  Generator generator(1);
  const std::map<std::string, int64_t> expected_parameters{
      {"jermmy", 1 * 40 * 9 + 40 + 40 * 2 * 9 + 40 + 1000 * 10 + 10},
      {"lenet", 32 * 25 + 32 + 64 + 64 * 32 * 25 + 64 + 128 + 3136 * 128 + 128 + 128 * 10 + 10},
      {"lstm", 4 * 128 * (28 + 128 + 2) + 128 * 10 + 10}};
  for (const std::string& name : zoo_model_names()) {
    const std::string captured_name(name);
    CAPTURE(captured_name);
    ModulePtr model = build_zoo_model(name, generator);
    Tensor logits = model->forward(Tensor::randn({3, 1, 28, 28}, generator));
    CHECK(logits.shape() == Shape{3, 10});
    if (expected_parameters.count(name)) CHECK(model->parameter_count() == expected_parameters.at(name));
  }
  ModulePtr resnet = build_zoo_model("resnet20", generator);
  auto parameters = resnet->named_parameters();
  CHECK(parameters.front().first == "stem.0.weight");
  bool has_shortcut = false;
  for (auto& [name, tensor] : parameters) has_shortcut |= name == "layers.3.shortcut.0.weight";
  CHECK(has_shortcut);
  CHECK(resnet->named_buffers().front().first == "stem.1.running_mean");
}

TEST_CASE("state_dict round-trips bit-exact through a file") {
  Generator a(1), b(2);
  ModulePtr source = build_zoo_model("lenet", a);
  // Make running statistics non-trivial.
  source->forward(Tensor::randn({4, 1, 28, 28}, a));
  ModulePtr target = build_zoo_model("lenet", b);
  const std::string path = temp_path("lenet.qf");
  source->save(path);
  target->load(path);
  for (auto& [name, tensor] : source->state_dict()) {
    const std::string captured_name(name);
    CAPTURE(captured_name);
    CHECK(tensor.to_vector() == target->state_dict().at(name).to_vector());
  }
  source->eval(), target->eval();
  Tensor x = Tensor::randn({2, 1, 28, 28}, a);
  CHECK(source->forward(x).to_vector() == target->forward(x).to_vector());
  std::remove(path.c_str());
}

TEST_CASE("loading rejects mismatched, truncated and corrupt files") {
  Generator generator(1);
  ModulePtr lenet = build_zoo_model("lenet", generator);
  ModulePtr jermmy = build_zoo_model("jermmy", generator);
  const std::string path = temp_path("jermmy.qf");
  jermmy->save(path);
  CHECK_THROWS_WITH_AS(lenet->load(path),
                       doctest::Contains("tensor \"0.bias\" has shape [40] f32, the model expects [32] f32"),
                       Error);
  std::string bytes = read_file(path);
  write_file_atomically(path, bytes.substr(0, bytes.size() - 100));
  CHECK_THROWS_WITH_AS(jermmy->load(path), doctest::Contains("truncated"), Error);
  write_file_atomically(path, "not a model");
  CHECK_THROWS_WITH_AS(jermmy->load(path), doctest::Contains("bad magic"), Error);
  std::remove(path.c_str());
  CHECK_THROWS_WITH_AS(jermmy->load(path), doctest::Contains("cannot open"), Error);
  TensorMap wrong = jermmy->state_dict();
  wrong["0.weight"] = Tensor::zeros({40, 1, 5, 5});
  CHECK_THROWS_WITH_AS(
      jermmy->load_state_dict(wrong),
      "state dict: tensor \"0.weight\" has shape [40,1,5,5] f32, the model expects [40,1,3,3] f32", Error);
}

TEST_CASE("train/eval mode reaches every child") {
  Generator generator(1);
  ModulePtr model = build_zoo_model("resnet8", generator);
  model->eval();
  for (auto& [name, module] : model->named_modules()) CHECK_FALSE(module->is_training());
  model->train();
  for (auto& [name, module] : model->named_modules()) CHECK(module->is_training());
}

TEST_CASE("gradients: lstm_cell and a two-layer LSTM") {
  using Inputs = std::vector<Tensor>;
  CHECK(check_gradients([](const Inputs& in) { return lstm_cell(in[0], in[1]); },
                        {random_leaf({3, 4 * 5}, 1, -2, 2), random_leaf({3, 5}, 2)}));
  Generator generator(3);
  LSTM lstm(4, 3, 2, generator);
  Inputs inputs{random_leaf({2, 5, 4}, 4), random_leaf({2, 2, 3}, 5), random_leaf({2, 2, 3}, 6)};
  for (const Tensor& p : lstm.parameters()) inputs.push_back(p);
  CHECK(check_gradients(
      [&](const Inputs& in) {
        LstmOutput out = lstm.forward_sequence(in[0], in[1], in[2]);
        return cat({reshape(out.outputs, {-1}), reshape(out.h, {-1}), reshape(out.c, {-1})}, 0);
      },
      inputs));
}

TEST_CASE("LSTM matches PyTorch 1.13 nn.LSTM on a fixed input") {
  // torch.nn.LSTM(2, 2, batch_first=True) with every weight 0.1·(k mod 7) - 0.3 in
  // parameter order, input x[b,t,f] = 0.1·(b+1)·(t+1) - 0.2·f; printed by PyTorch 1.13.
  Generator generator(0);
  LSTM lstm(2, 2, 1, generator);
  int k = 0;
  for (Tensor& p : lstm.parameters())
    for (int64_t i = 0; i < p.numel(); ++i) p.data()[i] = 0.1f * static_cast<float>(k++ % 7) - 0.3f;
  Tensor x = Tensor::empty({2, 3, 2});
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 3; ++t)
      for (int f = 0; f < 2; ++f) x.data()[(b * 3 + t) * 2 + f] = 0.1f * (b + 1) * (t + 1) - 0.2f * f;
  const std::vector<float> expected_h{-0.1814985f, -0.0685784f, -0.2176893f, -0.0518089f};
  for (const bool grad : {true, false}) {  // recorded (lstm_layer), and inference (lstm_layer_inference)
    CAPTURE(grad);
    std::optional<NoGradGuard> no_grad;
    if (!grad) no_grad.emplace();
    LstmOutput out = lstm.forward_sequence(x);
    for (int i = 0; i < 4; ++i) CHECK(out.h.data()[i] == doctest::Approx(expected_h[i]).epsilon(1e-4));
  }
}

TEST_CASE("A two-layer LSTM gives the same outputs and states in inference as when recorded, to rounding") {
  Generator generator(12);
  LSTM lstm(6, 20, 2, generator);
  const Tensor x = Tensor::randn({5, 7, 6}, generator);
  const Tensor h0 = Tensor::randn({2, 5, 20}, generator), c0 = Tensor::randn({2, 5, 20}, generator);
  const LstmOutput recorded = lstm.forward_sequence(x, h0, c0);
  NoGradGuard no_grad;
  const LstmOutput inferred = lstm.forward_sequence(x, h0, c0);
  CHECK(qforge::testing::all_close(inferred.outputs, recorded.outputs, 1e-5, 1e-6));
  CHECK(qforge::testing::all_close(inferred.h, recorded.h, 1e-5, 1e-6));
  CHECK(qforge::testing::all_close(inferred.c, recorded.c, 1e-5, 1e-6));
  CHECK(inferred.outputs.shape() == Shape{5, 7, 20});
  CHECK(inferred.h.shape() == Shape{2, 5, 20});
  CHECK(inferred.c.shape() == Shape{2, 5, 20});
}

TEST_CASE(
    "Inference keeps a conv's folded, reordered weights until any parameter changes, however it changes") {
  Generator generator(41);
  ModulePtr model = build_zoo_model("resnet8", generator);
  model->eval();
  TensorMap state = model->state_dict();               // the model's own tensors
  Conv2d *stem_conv = nullptr, *block_conv = nullptr;  // the first conv; one in the first residual block
  for (auto& [name, module] : model->named_modules())
    if (auto* conv = dynamic_cast<Conv2d*>(module)) {
      if (!stem_conv) stem_conv = conv;
      if (!block_conv && name.find("layers.0") != std::string::npos) block_conv = conv;
    }
  REQUIRE(stem_conv);
  REQUIRE(block_conv);
  REQUIRE(stem_conv != block_conv);
  // Each case: inference equals the layers run one by one (grad mode), and differs from the
  // last result, for batch 1 and a batch of 3 (primitives of other sizes, maybe other layouts).
  std::map<int64_t, std::vector<float>> last;
  auto check = [&](const std::string& label) {
    CAPTURE(label);
    for (const int64_t batch : {int64_t{1}, int64_t{3}}) {
      CAPTURE(batch);
      Generator images(7);
      const Tensor x = Tensor::randn({batch, 1, 28, 28}, images);
      const Tensor layer_by_layer = model->forward(x);  // grad mode on: no inference walk
      NoGradGuard no_grad;
      const Tensor inferred = model->forward(x);
      CHECK(qforge::testing::all_close(inferred, layer_by_layer, 1e-4, 1e-5));
      CHECK(inferred.to_vector() != last[batch]);
      last[batch] = inferred.to_vector();
    }
  };
  check("first calls");
  const float* kept = block_conv->inference_weights->weight.data();
  {
    NoGradGuard no_grad;
    model->forward(Tensor::randn({2, 1, 28, 28}, generator));
  }
  CHECK(block_conv->inference_weights->weight.data() == kept);  // nothing changed: nothing rebuilt
  block_conv->weight.data()[5] += 0.5f;                         // a write through data()
  check("a conv weight");
  CHECK(block_conv->inference_weights->weight.data() != kept);
  stem_conv->weight.data()[0] -= 0.25f;  // the first layer (1-channel NCHW input)
  check("the stem's weight");
  for (auto& [name, tensor] : state)  // BatchNorm statistics
    if (name.find("running_var") != std::string::npos) tensor.data()[1] *= 3.0f;
  check("running variances");
  for (auto& [name, module] : model->named_modules())
    if (auto* bn = dynamic_cast<BatchNorm2d*>(module)) bn->eps = 0.5f;
  check("eps");
  TensorMap loaded = model->state_dict();  // a checkpoint of other values, loaded
  for (auto& [name, tensor] : loaded) {
    if (tensor.dtype() != DType::f32) continue;
    Tensor copy = tensor.clone();
    for (int64_t i = 0; i < copy.numel(); ++i) copy.data()[i] *= 0.9f;
    if (tensor.dtype() == DType::f32) tensor = copy;
  }
  model->load_state_dict(loaded);
  check("a loaded state");
}

TEST_CASE("Sequential inference runs Conv2d-BatchNorm2d-ReLU as one conv: the layers' values, to rounding") {
  Generator generator(31);
  auto conv = std::make_shared<Conv2d>(8, 16, 3, Conv2dOptions::square(1, 1), true, generator);
  auto bn = std::make_shared<BatchNorm2d>(16);
  for (int64_t c = 0; c < 16; ++c) {  // statistics and affine parameters a trained BN has; one γ = 0
    bn->running_mean.data()[c] = 0.3f * static_cast<float>(c % 5) - 0.6f;
    bn->running_var.data()[c] = 0.25f + 0.2f * static_cast<float>(c % 7);
    bn->weight.data()[c] = c == 3 ? 0.0f : 1.5f - 0.2f * static_cast<float>(c);
    bn->bias.data()[c] = 0.1f * static_cast<float>(c % 4) - 0.15f;
  }
  {  // The fold's loop is the formula's tensor ops (quant's training-time fold), bit for bit.
    NoGradGuard no_grad;
    const auto [weight, bias] = fold_batch_norm(*conv, *bn);
    const Tensor factor = folding_factor(*bn);
    CHECK(weight.to_vector() == mul(conv->weight, reshape(factor, {16, 1, 1, 1})).to_vector());
    CHECK(bias.to_vector() == add(bn->bias, mul(sub(conv->bias, bn->running_mean), factor)).to_vector());
  }
  auto relu = std::make_shared<ReLU>();
  auto pool = std::make_shared<MaxPool2d>(Pool2dOptions::square(2));
  auto conv16 = std::make_shared<Conv2d>(16, 16, 3, Conv2dOptions::square(1, 1), false, generator);
  const Tensor x = Tensor::randn({4, 8, 12, 12}, generator);
  struct Case {
    const char* name;
    std::vector<ModulePtr> layers;
    bool folds;  // BN folded: equal to rounding; otherwise the same operations, bit for bit
  };
  const Case cases[] = {
      {"conv-bn-relu", {conv, bn, relu}, true},
      {"conv-bn", {conv, bn}, true},
      {"conv-relu", {conv, relu}, false},
      {"conv-relu-maxpool", {conv, relu, pool}, false},
      {"bn-relu (no conv first)", {std::make_shared<BatchNorm2d>(8), relu}, false},
      // a conv of blocked input (Note [Blocked inference]), then a pool on NCHW
      {"conv-bn-relu-conv-bn-relu-maxpool", {conv, bn, relu, conv16, bn, relu, pool}, true}};
  for (const Case& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    Sequential sequence(c.layers);
    for (bool training : {false, true}) {
      CAPTURE(training);
      sequence.train(training);
      const TensorMap before = sequence.state_dict();
      TensorMap saved;
      for (const auto& [name, tensor] : before) saved[name] = tensor.clone();
      Tensor expected = x;  // each layer on its own, gradients on: no layer fused
      for (const ModulePtr& layer : c.layers) expected = layer->forward(expected);
      expected = expected.detach();
      sequence.load_state_dict(saved, "the saved state");  // training BN moved its running statistics
      Tensor got;
      {
        NoGradGuard no_grad;
        got = sequence.forward(x);
      }
      // Folded only in evaluation: in training BN normalizes with the batch's statistics.
      if (c.folds && !training)
        CHECK(qforge::testing::all_close(got, expected, 1e-5, 1e-5));
      else
        CHECK(qforge::testing::all_close(got, expected, 0, 0));
      sequence.load_state_dict(saved, "the saved state");
    }
  }
}

TEST_CASE("resnet8 in evaluation: inference with folded BNs predicts what the layers one by one predict") {
  Generator generator(32);
  ModulePtr model = build_zoo_model("resnet8", generator);
  // Statistics a trained network has: a few training-mode batches move the running ones.
  for (int step = 0; step < 3; ++step) {
    NoGradGuard no_grad;
    model->forward(Tensor::randn({16, 1, 28, 28}, generator));
  }
  model->eval();
  const Tensor x = Tensor::randn({32, 1, 28, 28}, generator);
  const Tensor layers = model->forward(x).detach();  // gradients on: no layer fused
  Tensor folded;
  {
    NoGradGuard no_grad;
    folded = model->forward(x);
  }
  CHECK(qforge::testing::all_close(folded, layers, 1e-4, 1e-4));
  const Tensor folded_top = argmax(folded, 1), layers_top = argmax(layers, 1);
  int64_t same = 0;
  for (int64_t i = 0; i < folded_top.numel(); ++i)
    same += folded_top.data_as<int32_t>()[i] == layers_top.data_as<int32_t>()[i];
  CHECK(same == folded_top.numel());
}

TEST_CASE("BasicBlock inference: the add and ReLU as the last conv's post-ops equal the block's ops") {
  Generator generator(33);
  auto conv = [&](int64_t in, int64_t out, int64_t k, int64_t stride) {
    return std::make_shared<Conv2d>(in, out, k, Conv2dOptions::square(stride, k / 2), false, generator);
  };
  auto bn = [&](int64_t channels) {
    auto b = std::make_shared<BatchNorm2d>(channels);
    for (int64_t c = 0; c < channels; ++c) {
      b->running_mean.data()[c] = 0.2f * static_cast<float>(c % 3) - 0.2f;
      b->running_var.data()[c] = 0.5f + 0.1f * static_cast<float>(c % 5);
      b->weight.data()[c] = 1.2f - 0.05f * static_cast<float>(c);
      b->bias.data()[c] = 0.05f * static_cast<float>(c % 4);
    }
    return b;
  };
  auto residual = [&](int64_t in, int64_t out, int64_t stride) {
    return std::make_shared<Sequential>(std::vector<ModulePtr>{
        conv(in, out, 3, stride), bn(out), std::make_shared<ReLU>(), conv(out, out, 3, 1), bn(out)});
  };
  struct Case {
    const char* name;
    ModulePtr block;
    int64_t channels;
  };
  const Case cases[] = {
      {"identity shortcut, relu", std::make_shared<BasicBlock>(residual(16, 16, 1), nullptr, true), 16},
      {"identity shortcut, no relu", std::make_shared<BasicBlock>(residual(16, 16, 1), nullptr, false), 16},
      {"1x1 shortcut, relu",
       std::make_shared<BasicBlock>(
           residual(16, 32, 2),
           std::make_shared<Sequential>(std::vector<ModulePtr>{conv(16, 32, 1, 2), bn(32)}), true),
       16},
      {"odd channels: NCHW throughout", std::make_shared<BasicBlock>(residual(12, 12, 1), nullptr, true), 12},
  };
  for (const Case& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    c.block->eval();
    const Tensor x = Tensor::randn({3, c.channels, 10, 10}, generator);
    const Tensor expected = c.block->forward(x).detach();  // gradients on: the ops one by one
    Tensor got;
    {
      NoGradGuard no_grad;
      got = c.block->forward(x);
    }
    REQUIRE(got.shape() == expected.shape());
    CHECK(qforge::testing::all_close(got, expected, 1e-4, 1e-4));
    int64_t negative = 0;
    for (float v : got.to_vector()) negative += v < 0.0f;
    CHECK((negative > 0) == (name.find("no relu") != std::string::npos));
  }
}
