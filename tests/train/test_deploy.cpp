// Deployment on real data: QAT on a slice of Fashion-MNIST, then the integer model must
// follow its fake-quant simulation (the issue's bar: identical predictions on >= 99.8% of
// images, accuracy within 0.1 points), at 8 bits and with the 4-bit LSQ recipe; the .qfm
// the run writes evaluates as recorded.
#include <doctest/doctest.h>

#include <filesystem>

#include "core/file_io.h"
#include "tests/temp_folder.h"
#include "train/config.h"
#include "train/deploy.h"
#include "train/stages.h"

using namespace qforge;
using namespace qforge::train;
using nlohmann::json;

// Real data, whole runs: ctest runs this suite as its own test, labelled real-data (the
// sanitizer pass skips it: the same code runs there on synthetic data, 10x slower).
TEST_SUITE_BEGIN("real-data");

TEST_CASE("the integer model follows its fake-quant simulation on Fashion-MNIST (lenet, 8 and 4 bits)") {
  REQUIRE(std::filesystem::exists("/usr/share/datasets/fashion-mnist"));  // scripts/install-deps installs it
  for (const char* quant : {R"({"qat": {"epochs": 1}})",
                            R"({"weight": {"bits": 4, "learnable": true},
                                "activation": {"bits": 4, "learnable": true, "observer": "histogram"},
                                "qat": {"epochs": 1, "lr": 0.005}})"}) {
    CAPTURE(quant);
    const std::string out = testing::fresh_temp_folder("deploy_fashion");
    json source = json::parse(read_file(QFORGE_SOURCE_DIR "/configs/lenet.json"));
    source["train"]["epochs"] = 1;
    source["data"]["train_limit"] = 6000;
    source["data"]["test_limit"] = 2500;
    source["quant"] = json::parse(quant);
    source["output"]["dir"] = out;
    const RunConfig config = parse_config(source, "lenet.json");
    run_qat(config, false);
    const json summary = json::parse(read_file(out + "/summary.json"));
    REQUIRE(summary.contains("int8"));
    const json& int8 = summary["int8"];
    MESSAGE("int8 ", int8["accuracy"].get<double>(), " fake quant ", summary["qat"]["accuracy"].get<double>(),
            " identical ", int8["identical_predictions"].get<double>());
    CHECK(int8["identical_predictions"].get<double>() >= 0.998);
    CHECK(std::abs(int8["accuracy"].get<double>() - summary["qat"]["accuracy"].get<double>()) <= 0.001);
    CHECK(int8["fake_quant_accuracy"] == summary["qat"]["accuracy"]);
    CHECK(int8["accuracy"].get<double>() > 0.7);
    CHECK(int8["model_bytes"].get<double>() < 0.3 * int8["fp32_model_bytes"].get<double>());
    // The file the run wrote evaluates as recorded.
    EvalResult reloaded = evaluate(load_forward(config, out + "/model_qat.qfm"),
                                   load_datasets(config.data).test, config.train.eval_batch_size);
    CHECK(reloaded.accuracy == int8["accuracy"].get<double>());
  }
}

TEST_CASE("the LSTM on Fashion-MNIST rows: static integer LSTM follows QAT, dynamic follows fp32") {
  REQUIRE(std::filesystem::exists("/usr/share/datasets/fashion-mnist"));
  const std::string out = testing::fresh_temp_folder("deploy_lstm");
  json source = json::parse(read_file(QFORGE_SOURCE_DIR "/configs/lstm_digits.json"));
  source["data"] = {{"dataset", "fashion-mnist"}, {"train_limit", 4000}, {"test_limit", 2000}};
  source["train"]["epochs"] = 1;
  source["quant"] = {{"qat", {{"epochs", 1}}}};
  source["output"]["dir"] = out;
  const RunConfig config = parse_config(source, "lstm.json");
  run_qat(config, false);
  json summary = json::parse(read_file(out + "/summary.json"));
  REQUIRE(summary.contains("int8"));
  MESSAGE("lstm: fp32 ", summary["fp32"]["accuracy"].get<double>(), " qat ",
          summary["qat"]["accuracy"].get<double>(), " int8 ", summary["int8"]["accuracy"].get<double>(),
          " identical ", summary["int8"]["identical_predictions"].get<double>());
  // The simulation's gate products are the integer LSTM's (Note [The simulation runs the
  // deployed arithmetic], quant/qat_modules.cpp): the same prediction on every image.
  CHECK(summary["int8"]["identical_predictions"].get<double>() == 1.0);
  CHECK(summary["int8"]["accuracy"].get<double>() == summary["qat"]["accuracy"].get<double>());
  // Dynamic: the fp32 model from the same folder, quantize_dynamic style.
  json dynamic = source;
  dynamic["quant"] = {{"mode", "dynamic"}, {"fp32_checkpoint", out + "/model.qf"}};
  run_ptq(parse_config(dynamic, "lstm.json"));
  summary = json::parse(read_file(out + "/summary.json"));
  REQUIRE(summary.contains("int8_dynamic"));
  MESSAGE("lstm dynamic: ", summary["int8_dynamic"]["accuracy"].get<double>(), " identical ",
          summary["int8_dynamic"]["identical_predictions"].get<double>());
  CHECK(std::abs(summary["int8_dynamic"]["accuracy"].get<double>() -
                 summary["fp32"]["accuracy"].get<double>()) <= 0.003);
  CHECK(std::filesystem::exists(out + "/model_dynamic.qfm"));
}

TEST_SUITE_END();
