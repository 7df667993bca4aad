// The simulation is the deployment — for every configuration a user can write. For every
// zoo model and two layer-list models, on real Fashion-MNIST test images: the integer model
// converted from the fake-quant model must give the same prediction on every image, or
// the conversion must be refused with a ConvertError naming the layer. The configurations
// are generated from the model's own layer list (quant::overridable_layers): each layer kept
// in float in turn, the input and output overrides; 8/4/2-bit weights and activations,
// per-tensor and per-channel weights, affine and symmetric (signed, and unsigned with a
// reduced range) activations; PTQ, QAT and LSQ. A new layer type or option is covered by
// adding it to the model or to `schemes` below — nobody has to remember a layer name. The
// same integer models are exported as ONNX for ONNX Runtime to check (OnnxExports below).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/autograd.h"
#include "core/file_io.h"
#include "core/ops.h"
#include "core/ops/shape.h"
#include "nn/batch_norm.h"
#include "quant/convert.h"
#include "quant/equalize.h"
#include "quant/onnx/onnx_export.h"
#include "quant/prepare.h"
#include "tests/temp_folder.h"
#include "train/config.h"
#include "train/deploy.h"
#include "train/stages.h"
#include "train/trainer.h"

using namespace qforge;
using namespace qforge::train;
using nlohmann::json;

namespace {

// Two layer lists: the shipped one (conv-bn-relu, pool, flatten, dropout, linear) and one
// with every other layer type a config can name.
const char* kEveryLayer = R"([
  {"type": "conv2d", "in": 1, "out": 8, "kernel": 3, "padding": 1},
  {"type": "batchnorm2d", "channels": 8}, {"type": "relu"},
  {"type": "maxpool2d", "kernel": 2},
  {"type": "conv2d", "in": 8, "out": 16, "kernel": 3, "padding": 1, "groups": 2},
  {"type": "relu"},
  {"type": "avgpool2d", "kernel": 2},
  {"type": "conv2d", "in": 16, "out": 16, "kernel": 1},
  {"type": "adaptive_avgpool2d", "size": 2},
  {"type": "flatten"}, {"type": "dropout", "p": 0.1},
  {"type": "linear", "in": 64, "out": 32}, {"type": "relu"},
  {"type": "linear", "in": 32, "out": 10}])";

struct ModelCase {
  std::string name;
  json source;        // the run config
  int64_t every = 1;  // runs every n-th configuration of the list
};

std::vector<ModelCase> model_cases() {
  std::vector<ModelCase> cases;
  // resnet20 is resnet8's blocks, three per stage instead of one: every lowering rule and
  // option runs on resnet8 in full, and on resnet20 every third configuration of the list (all
  // kinds of them, at its depth) — in full it was 80 of the test's 177 s, and CI's time is finite.
  for (const char* name : {"jermmy", "lenet", "resnet8", "resnet20"})
    cases.push_back({name,
                     json::parse(read_file(std::string(QFORGE_SOURCE_DIR "/configs/") + name + ".json")),
                     std::string(name) == "resnet20" ? 3 : 1});
  json lstm = json::parse(read_file(QFORGE_SOURCE_DIR "/configs/lstm_digits.json"));
  lstm["data"] = {{"dataset", "fashion-mnist"}};
  cases.push_back({"lstm", lstm});
  cases.push_back({"custom_layers", json::parse(read_file(QFORGE_SOURCE_DIR "/configs/custom_layers.json"))});
  json every = cases.back().source;
  every["model"] = {{"layers", json::parse(kEveryLayer)}};
  cases.push_back({"every_layer", every});
  return cases;
}

// One configuration to convert: a quant section and how the model gets its parameters.
struct Variant {
  std::string label;
  std::string method;  // ptq, qat or lsq
  json quant;
  std::string float_layer;       // the layer an override keeps in float (refusals must name it)
  bool equalize = false;         // quant.ptq.equalize: cross-layer equalization before prepare
  bool bias_correction = false;  // quant.ptq.bias_correction: after calibration
  bool adaround = false;         // quant.ptq.adaround: after calibration, before bias correction
  bool high_bias = false;        // quant.ptq.high_bias_absorption: after equalization
};

// Quantizer schemes: {weights, activations} at a width.
json scheme(int bits, bool per_channel, const std::string& activation) {
  json weight = {{"bits", bits}, {"per_channel", per_channel}};
  json act = {{"bits", bits}};
  if (activation == "symmetric") act.update({{"symmetric", true}, {"signed", true}});
  if (activation == "symmetric_unsigned_reduced")
    act.update({{"symmetric", true}, {"signed", false}, {"reduce_range", true}});
  return {{"weight", weight}, {"activation", act}};
}

json with_method(json quant, const std::string& method) {
  if (method == "lsq") {
    quant["weight"]["learnable"] = true;
    quant["activation"]["learnable"] = true;
    quant["activation"]["observer"] = "histogram";
  }
  // Below 8 bits the network output keeps 8 bits, as the 4-bit recipe does: 16 logit levels tie the arg max.
  if (quant["activation"]["bits"] != 8)
    quant["overrides"].push_back({{"name", "output"}, {"activation", {{"bits", 8}}}});
  return quant;
}

std::vector<Variant> variants(nn::Module& float_model) {
  std::vector<Variant> out;
  // Schemes: every width x weight granularity x activation scheme under PTQ; QAT and LSQ at
  // every width with two of the schemes each (LSQ needs signed-symmetric or affine).
  for (int bits : {8, 4, 2})
    for (bool per_channel : {true, false})
      for (const char* activation : {"affine", "symmetric"}) {
        std::string label =
            "W";  // appended: GCC 12's -Wrestrict misfires on "W" + std::to_string (bug 105329)
        label.append(std::to_string(bits)).append("A").append(std::to_string(bits));
        label.append(per_channel ? " per-channel " : " per-tensor ").append(activation);
        out.push_back({label, "ptq", with_method(scheme(bits, per_channel, activation), "ptq"), ""});
        if (per_channel == (std::string(activation) == "affine")) {
          out.push_back({label, "qat", with_method(scheme(bits, per_channel, activation), "qat"), ""});
          out.push_back({label, "lsq", with_method(scheme(bits, per_channel, activation), "lsq"), ""});
        }
      }
  out.push_back({"W8A8 symmetric unsigned reduce_range", "ptq",
                 with_method(scheme(8, true, "symmetric_unsigned_reduced"), "ptq"), ""});
  // Calibrated 4-bit activations: mse's affine search (Note [Affine mse]) and its symmetric one.
  for (const char* activation : {"affine", "symmetric"}) {
    json quant = scheme(4, true, activation);
    quant["activation"]["observer"] = "mse";
    std::string label = "W4A4 per-channel, ";  // appended: GCC 12's -Wstringop-overflow misfires on +
    label.append(activation).append(" mse activations");
    out.push_back({label, "ptq", with_method(quant, "ptq"), ""});
  }
  // Binary weights (Note [Binary weights]) with 8-bit and with 1-bit activations; α per channel
  // from the weights (PTQ, QAT), learned (LSQ), and per tensor.
  for (int activation_bits : {8, 1})
    for (const char* method : {"ptq", "qat", "lsq"}) {
      json binary = scheme(activation_bits, true, "affine");
      binary["weight"] = {{"bits", 1}, {"binary", true}, {"per_channel", true}};
      std::string label = "W1 binary A";
      label.append(std::to_string(activation_bits));
      out.push_back({label, method, with_method(binary, method), ""});
    }
  // Cross-layer equalization (quant.ptq.equalize) before PTQ, per tensor and per channel.
  out.push_back(
      {"W8A8 per-tensor affine, equalized", "ptq", with_method(scheme(8, false, "affine"), "ptq"), "", true});
  out.push_back(
      {"W4A8 per-channel, equalized", "ptq",
       with_method({{"weight", {{"bits", 4}, {"per_channel", true}}}, {"activation", {{"bits", 8}}}}, "ptq"),
       "", true});
  out.push_back({"W8A8 per-tensor affine, equalized, high biases absorbed", "ptq",
                 with_method(scheme(8, false, "affine"), "ptq"), "", true, false, false, true});
  // Empirical bias correction (quant.ptq.bias_correction) at 4 bits per tensor, where it moves
  // biases most, and after equalization.
  out.push_back(
      {"W4A8 per-tensor, bias corrected", "ptq",
       with_method({{"weight", {{"bits", 4}, {"per_channel", false}}}, {"activation", {{"bits", 8}}}}, "ptq"),
       "", false, true});
  out.push_back(
      {"W4A8 per-channel, equalized and bias corrected", "ptq",
       with_method({{"weight", {{"bits", 4}, {"per_channel", true}}}, {"activation", {{"bits", 8}}}}, "ptq"),
       "", true, true});
  // AdaRound (quant.ptq.adaround, few iterations) per tensor at 4 bits, and at 2 bits per channel
  // with everything before and after it (equalization, bias correction).
  out.push_back(
      {"W4A8 per-tensor, AdaRound", "ptq",
       with_method({{"weight", {{"bits", 4}, {"per_channel", false}}}, {"activation", {{"bits", 8}}}}, "ptq"),
       "", false, false, true});
  out.push_back(
      {"W2A8 per-channel, equalized, AdaRound and bias corrected", "ptq",
       with_method({{"weight", {{"bits", 2}, {"per_channel", true}}}, {"activation", {{"bits", 8}}}}, "ptq"),
       "", true, true, true});
  json binary_per_tensor = scheme(8, false, "affine");
  binary_per_tensor["weight"] = {{"bits", 1}, {"binary", true}, {"per_channel", false}};
  out.push_back({"W1 binary per-tensor A8", "ptq", with_method(binary_per_tensor, "ptq"), ""});
  // Every layer with quantization of its own kept in float, one at a time (PTQ, 8 bits), and
  // the middle one under QAT and LSQ at 4 bits; the input and output overrides.
  const auto layers = quant::overridable_layers(float_model);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& [name, type] = layers[i];
    json keep_float = {{"overrides", {{{"name", name}, {"float", true}}}}};
    out.push_back({name + " (" + type + ") in float", "ptq", keep_float, name});
    if (i == layers.size() / 2)
      for (const char* method : {"qat", "lsq"}) {
        json quant = with_method(scheme(4, true, "affine"), method);
        quant["overrides"].push_back({{"name", name}, {"float", true}});
        out.push_back({name + " (" + type + ") in float, W4A4", method, quant, name});
      }
  }
  json input8 = with_method(scheme(4, true, "affine"), "ptq");
  input8["overrides"].push_back({{"name", "input"}, {"activation", {{"bits", 8}}}});
  out.push_back({"W4A4, input at 8 bits", "ptq", input8, ""});
  json output_float = with_method(scheme(8, true, "affine"), "qat");
  output_float["overrides"].push_back({{"name", "output"}, {"float", true}});
  out.push_back({"output in float", "qat", output_float, ""});
  return out;
}

Datasets first(const Datasets& all, int64_t train, int64_t test) {
  auto take = [](const data::Dataset& d, int64_t n) {
    auto rows = [&](const Tensor& t) {
      Shape shape = t.shape();
      shape[0] = std::min(n, shape[0]);
      Tensor out = Tensor::empty(shape, t.dtype());
      std::memcpy(out.bytes(), t.bytes(), out.size_bytes());
      return out;
    };
    data::Dataset out = d;
    out.images = rows(d.images);
    out.labels = rows(d.labels);
    return out;
  };
  return {take(all.train, train), take(all.test, test)};
}

// The same configurations through the ONNX export: with QFORGE_AGREEMENT_ONNX set (ctest sets
// it for train_real_data), every converted model is also exported as QDQ ONNX into that folder,
// beside the test images and the integer model's predictions on them, listed in manifest.jsonl
// for ONNX Runtime to run (ctest onnx_runtime, tests/onnx/ort_manifest.js). An export the
// exporter refuses must name the layer (the static integer LSTM).
class OnnxExports {
 public:
  OnnxExports() {
    const char* folder = std::getenv("QFORGE_AGREEMENT_ONNX");
    if (!folder || !*folder) return;
    folder_ = folder;
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  bool is_on() const { return !folder_.empty(); }
  // The images every model of this case is checked on, as raw float32 (N,C,H,W).
  void set_images(const std::string& case_name, const data::Dataset& test) {
    if (!is_on()) return;
    images_ = Tensor::empty(test.images.shape());  // normalized as the loader does
    const auto* pixels = test.images.data_as<uint8_t>();
    for (int64_t i = 0; i < images_.numel(); ++i) images_.data()[i] = test.normalize(pixels[i]);
    inputs_ = case_name + ".inputs.f32";
    write_file_atomically(folder_ + "/" + inputs_,
                          std::string(reinterpret_cast<const char*>(images_.bytes()), images_.size_bytes()));
  }
  void add(const std::string& label, const std::string& case_name, const quant::int8::IntegerModel& integer) {
    if (!is_on()) return;
    std::string bytes;
    try {
      bytes = quant::onnx_io::export_integer_onnx(integer);
    } catch (const quant::onnx_io::ExportError& error) {
      const std::string message = error.what();
      CHECK_MESSAGE(message.find("not exportable") != std::string::npos, message);
      ++refused;
      return;
    }
    const std::string stem = case_name + "_" + std::to_string(exported++);
    quant::onnx_io::write_onnx(bytes, folder_ + "/" + stem + ".onnx");
    integer.save(folder_ + "/" + stem + ".qfm");  // what qforge ran, to look into a disagreement
    NoGradGuard no_grad;
    const Tensor top = argmax(integer.forward(images_), 1);
    std::string predictions;
    for (int64_t i = 0; i < top.numel(); ++i) predictions += std::to_string(top.data_as<int32_t>()[i]) + "\n";
    write_file_atomically(folder_ + "/" + stem + ".txt", predictions);
    manifest_ += json{{"label", label},
                      {"model", stem + ".onnx"},
                      {"inputs", inputs_},
                      {"shape", images_.shape()},
                      {"predictions", stem + ".txt"}}
                     .dump() +
                 "\n";
  }
  void finish() const {
    if (is_on()) write_file_atomically(folder_ + "/manifest.jsonl", manifest_);
  }
  int exported = 0, refused = 0;

 private:
  std::string folder_, inputs_, manifest_;
  Tensor images_;
};

struct Outcome {
  int converted = 0, refused = 0;
  double lowest = 1;
  std::string lowest_label = "every one identical";
};

}  // namespace

TEST_SUITE_BEGIN("real-data");

TEST_CASE(
    "every configuration converts to an integer model that agrees with its simulation, or is refused by "
    "name") {
  REQUIRE(std::filesystem::exists(data::kFashionMnistFolder));
  const std::string folder = testing::fresh_temp_folder("agreement");
  int total_converted = 0, total_refused = 0;
  OnnxExports onnx;
  double lowest = 1;
  std::string lowest_label = "every one identical";
  int64_t absorbed_channels = 0;  // by the high-bias variants
  for (const ModelCase& model_case : model_cases()) {
    const auto started = std::chrono::steady_clock::now();
    json source = model_case.source;
    source["data"]["train_limit"] = 4096;
    source["data"]["test_limit"] = 600;
    source["train"]["epochs"] = 1;
    source["output"] = {{"dir", folder + "/" + model_case.name}};
    const RunConfig config = parse_config(source, model_case.name + ".json");
    const Datasets datasets = load_datasets(config.data);
    const Datasets qat_data = first(datasets, 256, datasets.test.size());
    // The fp32 model: one short epoch, so predictions have margins as a trained model's do.
    nn::ModulePtr fp32 = build_model(config, config.train.seed);
    fit(*fp32, config, datasets, {.quiet = true});
    TensorMap fp32_state;
    for (auto& [name, tensor] : fp32->state_dict()) fp32_state[name] = tensor.clone();
    const Shape sample = sample_shape(datasets.test);
    onnx.set_images(model_case.name, datasets.test);

    Outcome outcome;
    std::vector<Variant> all;
    const std::vector<Variant> listed = variants(*fp32);
    for (std::size_t i = 0; i < listed.size(); i += static_cast<std::size_t>(model_case.every))
      all.push_back(listed[i]);
    for (const Variant& v : all) {
      const std::string label = model_case.name + ": " + v.label + " (" + v.method + ")";
      CAPTURE(label);
      nn::ModulePtr model = build_model(config, config.train.seed);
      model->load_state_dict(fp32_state, "the fp32 model");
      if (v.equalize) quant::equalize(*model);
      if (v.high_bias) {
        // The trained zoo's batch norms keep β under 3|γ| (nothing to absorb): shift every
        // other channel's β up by 4|γ| first so the absorption has channels to move.
        for (auto& [name, module] : model->named_modules())
          if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(module))
            for (int64_t c = 0; c < bn->bias.numel(); c += 2)
              bn->bias.data()[c] += 4 * std::fabs(bn->weight.data()[c]);
        for (const quant::AbsorbedPair& pair : quant::absorb_high_bias(*model).pairs)
          absorbed_channels += pair.channels;
      }
      std::shared_ptr<quant::QatModel> prepared;
      try {
        prepared = quant::prepare_qat(model, quant::parse_quant_spec(v.quant, "agreement.json"));
      } catch (const Error& error) {  // a config the quantizer refuses: it must say which layer
        CHECK_MESSAGE(!v.float_layer.empty(), "refused at prepare: ", error.what());
        CHECK(std::string(error.what()).find("quant.overrides") != std::string::npos);
        ++outcome.refused;
        continue;
      }
      calibrate(*prepared, datasets.train, 4, 64, config.train.seed);
      if (v.adaround)
        adaround(*prepared, datasets.train, {.iterations = 200, .images = 128, .batch = 16}, 64,
                 config.train.seed);
      if (v.bias_correction) correct_bias(*prepared, datasets.train, 4, 64, config.train.seed);
      if (v.method != "ptq") {
        RunConfig qat = config;
        qat.output_dir = folder + "/" + model_case.name + "_qat";
        fit(*prepared, qat, qat_data,
            {.stage = "qat", .epochs = 1, .learning_rate = 0.01 * config.train.optimizer.lr, .quiet = true});
      }
      prepared->eval();
      quant::int8::IntegerModel integer;
      try {
        integer = quant::convert(*prepared, sample);
      } catch (const quant::ConvertError& error) {  // the runtime cannot run it: named, with the layer
        const std::string message = error.what();
        CHECK_MESSAGE(!v.float_layer.empty(), "refused: ", message);
        CHECK_MESSAGE(message.find(v.float_layer) != std::string::npos,
                      "the refusal names another layer: ", message);
        ++outcome.refused;
        continue;
      }
      const Agreement agreement =
          compare_models([&](const Tensor& x) { return integer.forward(x); },
                         [&](const Tensor& x) { return prepared->forward(x); }, datasets.test, 300);
      // Conv, linear and LSTM layers simulate the deployed arithmetic (Note [The simulation runs
      // the deployed arithmetic], quant/qat_modules.cpp): every prediction is the integer model's.
      CHECK_MESSAGE(agreement.identical_predictions == 1.0, "identical predictions ",
                    agreement.identical_predictions, ", fake quant ", agreement.b.accuracy, ", int8 ",
                    agreement.a.accuracy, ", largest logit difference ", agreement.max_logit_difference);
      ++outcome.converted;
      onnx.add(label, model_case.name, integer);
      if (agreement.identical_predictions < outcome.lowest)
        outcome.lowest = agreement.identical_predictions, outcome.lowest_label = label;
    }
    MESSAGE(model_case.name, ": ", all.size(), " configurations, ", outcome.converted, " converted, ",
            outcome.refused, " refused by name; lowest agreement ", 100 * outcome.lowest, "% (",
            outcome.lowest_label, "); ",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), " s");
    total_converted += outcome.converted, total_refused += outcome.refused;
    if (outcome.lowest < lowest) lowest = outcome.lowest, lowest_label = outcome.lowest_label;
  }
  MESSAGE("agreement: ", total_converted + total_refused, " configurations, ", total_converted,
          " converted, ", total_refused, " refused by name; lowest agreement ", 100 * lowest, "% (",
          lowest_label, ")");
  CHECK_MESSAGE(absorbed_channels > 0, "the high-bias variants absorbed nothing on any model");
  onnx.finish();
  if (onnx.is_on())
    MESSAGE("ONNX: ", onnx.exported, " converted models exported for ONNX Runtime, ", onnx.refused,
            " refused by name");
}

TEST_SUITE_END();
