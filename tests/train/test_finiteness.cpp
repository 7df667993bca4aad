// The finiteness gate (Note [Finiteness gate], nn/module.h) at every stage that writes a
// model: a diverging QAT, a PTQ calibrated on overflowing inputs, a file a diverged run
// wrote — each one error naming the stage and the value, and nothing written.
#include <doctest/doctest.h>

#include <filesystem>
#include <limits>

#include "core/file_io.h"
#include "core/serialize.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/model_files.h"
#include "train/stages.h"
#include "train/trainer.h"

using namespace qforge;
using namespace qforge::train;
using namespace qforge::testing;
using nlohmann::json;

namespace {
bool exists(const std::string& path) { return std::filesystem::exists(path); }

// An fp32 model of the small task, trained once for the tests below.
std::string trained_fp32(const std::string& data) {
  static std::string checkpoint;
  if (!checkpoint.empty()) return checkpoint;
  json source = small_config(data, temp_folder("finite_fp32"));
  source["train"]["epochs"] = 1;
  RunConfig config = parse_config(source, "test.json");
  fit(*build_model(config, config.train.seed), config, load_datasets(config.data), {.quiet = true});
  checkpoint = config.output_dir + "/model.qf";
  return checkpoint;
}
}  // namespace

TEST_CASE("a diverging QAT stops naming the stage, the epoch and the quantizer, and saves nothing of it") {
  const std::string data = temp_folder("finite_qat_data");
  write_separable_dataset(data, 256, 64);
  const std::string fp32 = trained_fp32(data);
  for (const std::string optimizer : {"sgd", "adam"}) {
    CAPTURE(optimizer);
    const std::string out = temp_folder("finite_qat_" + optimizer);
    json source = small_config(data, out);
    source["train"]["optimizer"] = {{"type", optimizer}, {"lr", 0.05}};
    source["quant"] = {{"fp32_checkpoint", fp32}, {"qat", {{"epochs", 2}, {"lr", 1e30}}}};
    CHECK_THROWS_WITH_AS(run_qat(parse_config(source, "test.json"), false),
                         doctest::Contains("train (qat): model."), Error);
    try {
      run_qat(parse_config(source, "test.json"), false);
    } catch (const Error& error) {
      const std::string message = error.what();
      MESSAGE(message);
      CHECK(message.find("at epoch 1") != std::string::npos);
      CHECK(message.find("quant") != std::string::npos);  // the quantizer or value, by name
    }
    for (const char* file : {"/model_qat.qf", "/checkpoint_qat.qf", "/model_qat.qfm"})
      CHECK(!exists(out + file));
  }
}

TEST_CASE("PTQ refuses observers that saw overflowing values, and saves nothing") {
  const std::string data = temp_folder("finite_ptq_data");
  write_separable_dataset(data, 256, 64);
  const std::string out = temp_folder("finite_ptq");
  json source = small_config(data, out);
  source["data"]["normalize"]["mean"] = 1e38;  // finite, but x - mean overflows once scaled
  source["quant"] = {{"fp32_checkpoint", trained_fp32(data)}};
  CHECK_THROWS_WITH_AS(run_ptq(parse_config(source, "test.json")),
                       doctest::Contains("calibration: input_quant: the observed range [-inf"), Error);
  CHECK(!exists(out + "/model_ptq.qf"));
  CHECK(!exists(out + "/model_ptq.qfm"));
}

TEST_CASE("a file that holds a non-finite value is refused by name when loaded") {
  const std::string data = temp_folder("finite_load_data");
  write_separable_dataset(data, 256, 64);
  const std::string out = temp_folder("finite_load");
  json source = small_config(data, out);
  source["quant"] = {{"fp32_checkpoint", trained_fp32(data)}, {"qat", {{"epochs", 1}}}};
  const RunConfig config = parse_config(source, "test.json");
  run_qat(config, false);
  for (const char* name :
       {"model.5.linear.weight", "model.0.output_quant.observer_max", "input_quant.scale"}) {
    CAPTURE(name);
    TensorFile file = load_tensor_file(out + "/model_qat.qf");
    Tensor edited = file.tensors.at(name).clone();
    edited.data()[0] = std::string(name).find("observer") != std::string::npos
                           ? -std::numeric_limits<float>::quiet_NaN()
                           : std::numeric_limits<float>::infinity();
    file.tensors[name] = edited;
    save_tensor_file(out + "/broken.qf", file.tensors, file.metadata);  // valid checksums
    CHECK_THROWS_WITH_AS(load_saved_model(config, out + "/broken.qf"),
                         doctest::Contains((std::string("broken.qf: ") + name + " holds").c_str()), Error);
  }
  // A scale whose reciprocal overflows is finite, but what fake quantization multiplies by is not.
  TensorFile file = load_tensor_file(out + "/model_qat.qf");
  Tensor tiny = file.tensors.at("input_quant.scale").clone();
  tiny.data()[0] = 1e-40f;
  file.tensors["input_quant.scale"] = tiny;
  save_tensor_file(out + "/tiny.qf", file.tensors, file.metadata);
  CHECK_THROWS_WITH_AS(load_saved_model(config, out + "/tiny.qf"),
                       doctest::Contains("input_quant.inverse_scale holds inf"), Error);
  // The sentinels of an observer that never saw data are not values: a fresh model loads.
  CHECK(load_saved_model(config, out + "/model_qat.qf"));
}
