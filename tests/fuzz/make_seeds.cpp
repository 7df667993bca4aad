// Writes the model-file fuzzer's seeds (tests/fuzz/seed*.qfm and corpus/model_file): a small
// model with every kind of field — grouped conv, relu, pools, flatten, linear — as an 8-bit
// a 4-bit (packed) and a binary (1 bit per weight) integer model, their headers as JSON, and a float and a
// QAT .qf; and the ONNX importer's (corpus/onnx): that model and a small residual network exported as float
// ONNX, and the 8-bit integer model as QDQ ONNX (which the importer must refuse by name).
// Run it after a file-format change:  ./build/tests/fuzz/make_fuzz_seeds tests/fuzz
#include <cstdio>
#include <string>

#include "core/autograd.h"
#include "core/file_io.h"
#include "core/random.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "quant/convert.h"
#include "quant/onnx/onnx_export.h"
#include "quant/prepare.h"
#include "train/config.h"
#include "train/model_files.h"

using namespace qforge;

namespace {
nn::ModulePtr small_model(Generator& generator) {
  return std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(1, 4, 3, Conv2dOptions{}, true, generator), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::MaxPool2d>(Pool2dOptions::square(2)),
      std::make_shared<nn::Conv2d>(4, 4, 3, Conv2dOptions::square(1, 1, 1, 2), true, generator),
      std::make_shared<nn::AvgPool2d>(Pool2dOptions::square(2)), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(4 * 3 * 3, 3, true, generator)});
}

std::shared_ptr<quant::QatModel> calibrated(const nlohmann::json& quant, Generator& generator) {
  auto prepared = quant::prepare_qat(small_model(generator), quant::parse_quant_spec(quant, "seed.json"));
  prepared->train();
  {
    NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) prepared->forward(Tensor::randn({8, 1, 14, 14}, generator));
  }
  prepared->eval();
  return prepared;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fuzz_seeds tests/fuzz\n");
    return 2;
  }
  const std::string dir = argv[1], corpus = dir + "/corpus/model_file";
  Generator generator(13);
  for (const auto& [stem, quant] : {std::pair<std::string, nlohmann::json>{"", nullptr},
                                    {"_packed", {{"weight", {{"bits", 4}}}}},
                                    {"_binary", {{"weight", {{"bits", 1}, {"binary", true}}}}}}) {
    const quant::int8::IntegerModel model = quant::convert(*calibrated(quant, generator), {1, 14, 14});
    model.save(dir + "/seed" + stem + ".qfm");
    model.save(corpus + "/small" + stem + ".qfm");
    write_file_atomically(corpus + "/header" + stem + ".json",
                          load_tensor_file(dir + "/seed" + stem + ".qfm").metadata.dump() + "\n");
  }
  const train::RunConfig config = train::parse_config(
      nlohmann::json::parse(R"({"data": {"dataset": "idx", "path": "seed"}, "model": {"layers": [
        {"type": "conv2d", "in": 1, "out": 4, "kernel": 3}, {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "in": 144, "out": 3}]}})"),
      "seed.json");
  train::save_model(*train::build_model(config, 1), corpus + "/float.qf", config, "fp32");
  auto prepared =
      quant::prepare_qat(train::build_model(config, 1), quant::parse_quant_spec(nullptr, "seed.json"));
  train::save_model(*prepared, corpus + "/qat.qf", config, "qat");
  const std::string onnx = dir + "/corpus/onnx";
  Generator onnx_generator(17);
  write_file_atomically(onnx + "/small.onnx",
                        quant::onnx_io::export_float_onnx(*small_model(onnx_generator), {1, 14, 14}));
  const train::RunConfig residual = train::parse_config(
      nlohmann::json::parse(R"({"data": {"dataset": "idx", "path": "seed"}, "model": {"layers": [
        {"type": "conv2d", "in": 1, "out": 4, "kernel": 3, "padding": 1, "bias": false},
        {"type": "batchnorm2d", "channels": 4}, {"type": "relu"},
        {"type": "residual", "layers": [{"type": "conv2d", "in": 4, "out": 4, "kernel": 3, "padding": 1},
                                        {"type": "relu"}, {"type": "conv2d", "in": 4, "out": 4, "kernel": 1}]},
        {"type": "residual", "relu": false,
         "layers": [{"type": "conv2d", "in": 4, "out": 4, "kernel": 3, "stride": 2, "padding": 1}],
         "shortcut": [{"type": "conv2d", "in": 4, "out": 4, "kernel": 1, "stride": 2}]},
        {"type": "adaptive_avgpool2d", "size": 1}, {"type": "flatten"},
        {"type": "linear", "in": 4, "out": 3}]}})"),
      "seed.json");
  write_file_atomically(onnx + "/residual.onnx",
                        quant::onnx_io::export_float_onnx(*train::build_model(residual, 3), {1, 8, 8}));
  write_file_atomically(onnx + "/qdq.onnx", quant::onnx_io::export_integer_onnx(quant::convert(
                                                *calibrated(nullptr, generator), {1, 14, 14})));
  std::printf("wrote the seeds into %s, %s and %s\n", dir.c_str(), corpus.c_str(), onnx.c_str());
  return 0;
}
