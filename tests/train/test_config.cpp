// The config (train/config.h): parsed once and strictly, errors naming the key; --set;
// every shipped config; a saved model's spec against the config.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/config_reader.h"
#include "core/file_io.h"
#include "core/random.h"
#include "core/serialize.h"
#include "data/idx.h"
#include "quant/prepare.h"
#include "quant/qconfig.h"
#include "tests/temp_folder.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/model_files.h"
#include "train/optimizer.h"
#include "train/stages.h"
#include "train/studies/calibrate_compare.h"
#include "train/studies/sensitivity.h"
#include "train/studies/sweep.h"
#include "train/trainer.h"

using namespace qforge;
using namespace qforge::train;
using namespace qforge::testing;
using nlohmann::json;

namespace {
std::string error_of(const json& config) {
  try {
    parse_config(config, "test.json");
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}
}  // namespace

TEST_CASE("config errors name the key path and the expectation") {
  json base = small_config("/tmp", "/tmp/out");
  json bad = base;
  bad["train"]["optimizer"]["lr"] = "fast";
  CHECK(error_of(bad) == "test.json: train.optimizer.lr: expected a number, got \"fast\"");
  // The stages' settings of the quant section are parsed here too (from tests/quant/test_prepare.cpp).
  try {
    parse_quant_section(json::parse(R"({"qat": {"epoch": 1}})"), "c.json");
    FAIL("quant.qat.epoch accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("c.json: quant.qat.epoch: unknown key") == 0);
  }
  bad = base;
  bad["train"]["optimzer"] = json::object();
  CHECK(error_of(bad).find("test.json: train.optimzer: unknown key (known: ") == 0);
  bad = base;
  bad["train"]["epochs"] = 2.5;
  CHECK(error_of(bad) == "test.json: train.epochs: expected an integer, got 2.5");
  bad = base;
  bad["model"] = {{"name", "vgg"}};
  CHECK(error_of(bad).find("test.json: model.name: unknown zoo model \"vgg\"") == 0);
  bad = base;
  bad["model"]["layers"][0]["kernal"] = 3;
  CHECK(error_of(bad).find("test.json: model.layers.0.kernal: unknown key") == 0);
  bad = base;
  bad["train"]["schedule"]["type"] = "linear";
  CHECK(error_of(bad) ==
        "test.json: train.schedule.type: expected one of none, step, cosine, got \"linear\"");
  CHECK(error_of(base).empty());
  // Values out of range (each was accepted and produced a NaN or a useless run).
  for (auto [path, value, message] :
       {std::tuple{"/train/optimizer/momentum", json(-5),
                   "train.optimizer.momentum: expected a number in [0, 1)"},
        std::tuple{"/train/optimizer/weight_decay", json(-10),
                   "train.optimizer.weight_decay: expected a number >= 0"},
        std::tuple{"/train/threads", json(1000000), "train.threads: expected at most 1024"},
        std::tuple{"/data/normalize/std", json(1e-30), "data.normalize.std: expected a number >= 0.001"}}) {
    bad = base;
    bad[json::json_pointer(path)] = value;
    const std::string captured_path(path);
    CAPTURE(captured_path);
    CHECK(error_of(bad).find(std::string("test.json: ") + message) == 0);
  }
  bad = base;
  bad["train"]["schedule"] = {{"type", "step"}, {"gamma", -1}};
  CHECK(error_of(bad).find("train.schedule.gamma: expected a positive number") != std::string::npos);
  bad = base;
  bad["train"]["schedule"] = {{"type", "cosine"}, {"min_lr", -5}};
  CHECK(error_of(bad).find("train.schedule.min_lr: expected a number >= 0") != std::string::npos);
  // A pooling window larger than its input is caught when the model is built, by layer.
  bad = base;
  bad["data"] = {{"dataset", "fashion-mnist"}};
  bad["model"]["layers"][3] = {{"type", "maxpool2d"}, {"kernel", 29}};
  CHECK(error_of(bad).find(
            "test.json: model.layers.3 (MaxPool2d): max_pool2d: input [1,4,28,28] is smaller") == 0);
  bad["model"]["layers"][3] = {{"type", "avgpool2d"}, {"kernel", 300}};
  CHECK(error_of(bad).find("test.json: model.layers.3 (AvgPool2d)") == 0);
  // Residual blocks: their lists are checked by path; they nest at most 8 deep; the sum's shapes must agree.
  bad = base;
  bad["model"]["layers"][1] = {{"type", "residual"}, {"layers", json::array()}};
  CHECK(error_of(bad) == "test.json: model.layers.1.layers: expected a non-empty array of layer objects");
  bad["model"]["layers"][1] = {{"type", "residual"}, {"layers", {{{"type", "relu"}, {"kernal", 2}}}}};
  CHECK(error_of(bad).find("test.json: model.layers.1.layers.0.kernal: unknown key") == 0);
  json nested = {{"type", "relu"}};
  for (int depth = 0; depth < 9; ++depth) nested = {{"type", "residual"}, {"layers", {nested}}};
  bad["model"]["layers"][1] = nested;
  CHECK(error_of(bad).find(".type: residual blocks nest at most 8 deep") != std::string::npos);
  bad = base;
  bad["data"] = {{"dataset", "fashion-mnist"}};
  bad["model"]["layers"][1] = {{"type", "residual"},
                               {"layers", {{{"type", "conv2d"}, {"in", 4}, {"out", 4}, {"kernel", 3}}}}};
  CHECK(error_of(bad).find("test.json: model.layers.1 (BasicBlock)") == 0);
  bad["model"]["layers"][1]["layers"][0]["padding"] = 1;
  bad["model"]["layers"][1]["relu"] = false;
  CHECK(error_of(bad).find("model.layers.1") ==
        std::string::npos);  // (the linear layer, made for 8x8, fails)
}

TEST_CASE("quant.ptq.adaround: true for the defaults, an object of options, errors by key") {
  auto ptq_of = [](const char* text) { return parse_quant_section(json::parse(text), "c.json").ptq; };
  auto error = [&](const char* text) {
    try {
      ptq_of(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_FALSE(ptq_of("{}").adaround);
  CHECK_FALSE(ptq_of(R"({"ptq": {"adaround": false}})").adaround);
  const PtqSettings defaults = ptq_of(R"({"ptq": {"adaround": true}})");
  CHECK(defaults.adaround);
  CHECK(defaults.adaround_options.iterations == 10000);  // the paper's and AIMET's defaults
  CHECK(defaults.adaround_options.regularization == 0.01);
  CHECK(defaults.adaround_options.beta_start == 20);
  CHECK(defaults.adaround_options.beta_end == 2);
  CHECK(defaults.adaround_options.warm_start == 0.2);
  CHECK(defaults.adaround_options.images == 1024);
  CHECK(defaults.adaround_options.batch == 32);
  const PtqSettings set = ptq_of(
      R"({"ptq": {"adaround": {"iterations": 500, "regularization": 0.1, "beta": [10, 3], "warm_start": 0.1,
                               "images": 256, "batch": 16, "lr": 0.01}}})");
  CHECK(set.adaround);
  CHECK(set.adaround_options.iterations == 500);
  CHECK(set.adaround_options.regularization == 0.1);
  CHECK(set.adaround_options.beta_start == 10);
  CHECK(set.adaround_options.beta_end == 3);
  CHECK(set.adaround_options.warm_start == 0.1);
  CHECK(set.adaround_options.images == 256);
  CHECK(set.adaround_options.batch == 16);
  CHECK(set.adaround_options.lr == 0.01);
  CHECK(ptq_of(R"({"ptq": {"adaround": {}}})").adaround);  // an empty object: the defaults
  CHECK(error(R"({"ptq": {"adaround": 3}})")
            .find("c.json: quant.ptq.adaround: expected true, false or an object") == 0);
  CHECK(error(R"({"ptq": {"adaround": {"iteration": 5}}})")
            .find("c.json: quant.ptq.adaround.iteration: unknown key") == 0);
  CHECK(error(R"({"ptq": {"adaround": {"beta": [20]}}})") ==
        "c.json: quant.ptq.adaround.beta: expected [start, end], two positive numbers");
  CHECK(error(R"({"ptq": {"adaround": {"warm_start": 1}}})") ==
        "c.json: quant.ptq.adaround.warm_start: expected a number in [0, 1)");
  CHECK(error(R"({"ptq": {"adaround": {"iterations": 0}}})").find("c.json: quant.ptq.adaround.iterations") ==
        0);
  CHECK(error(R"({"ptq": {"adaround": {"lr": 0}}})") ==
        "c.json: quant.ptq.adaround.lr: expected a positive number");
}

TEST_CASE("config files: duplicate keys, deep nesting, huge files and overflowing numbers are errors") {
  const std::string folder = temp_folder("config_files");
  auto error_in = [&](const std::string& text) {
    write_file_atomically(folder + "/c.json", text);
    try {
      load_config(folder + "/c.json");
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string();
  };
  CHECK(error_in(R"({"train": {"epochs": 1, "epochs": 2}})").find("train.epochs: the key appears twice") !=
        std::string::npos);
  CHECK(error_in(std::string(100000, '[') + std::string(100000, ']')).find("nested deeper than 64 levels") !=
        std::string::npos);
  CHECK(error_in(R"({"train": {"optimizer": {"lr": 1e400}}})").find("c.json: not valid JSON") !=
        std::string::npos);
  CHECK(error_in("{\"x\": \"" + std::string(2 << 20, 'a') + "\"}").find("a config is at most") !=
        std::string::npos);
}

TEST_CASE("every shipped config parses, its quant section included") {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(QFORGE_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".json") continue;
    CAPTURE(entry.path().string());
    RunConfig config = load_config(entry.path().string());
    // load_config parsed the quant section; its overrides must name layers of the model.
    CHECK_NOTHROW(quant::prepare_qat(build_model(config, 0), config.quant.spec));
    ++count;
  }
  CHECK(count >= 9);
}

TEST_CASE("--set overrides any key, parsing JSON values") {
  json config = {{"train", {{"epochs", 5}}}};
  apply_override(config, "train.optimizer.lr=0.1");
  apply_override(config, "train.epochs=7");
  apply_override(config, "model.name=lenet");
  CHECK(config["train"]["optimizer"]["lr"] == 0.1);
  CHECK(config["train"]["epochs"] == 7);
  CHECK(config["model"]["name"] == "lenet");
  CHECK_THROWS_AS(apply_override(config, "novalue"), Error);
}

TEST_CASE("--set refuses keys and values that are not UTF-8, and messages never throw on them") {
  // Found by fuzz_config: a key path with a stray byte became an object key, and the
  // error message for the wrong type then threw nlohmann's UTF-8 error instead of ours.
  json config = {{"train", {{"epochs", 5}}}};
  CHECK_THROWS_WITH_AS(apply_override(config, std::string("train.epochs.x\xcc\x00", 16) + "=1"),
                       "--set: the key path is not valid UTF-8", Error);
  CHECK_THROWS_WITH_AS(apply_override(config, "train.epochs=\xcc"), doctest::Contains("not valid UTF-8"),
                       Error);
  CHECK(config["train"]["epochs"] == 5);
}

TEST_CASE("eval and convert check a saved model's spec against the config, naming the first difference") {
  const std::string data = temp_folder("spec_data"), out = temp_folder("spec_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["quant"] = {{"qat", {{"epochs", 1}}}};
  run_qat(parse_config(source, "test.json"), false);
  json changed = source;
  changed["quant"]["weight"] = {{"bits", 4}};
  CHECK_THROWS_WITH_AS(load_saved_model(parse_config(changed, "other.json"), out + "/model_qat.qf"),
                       doctest::Contains("quant.weight.bits: the file has 8, the config has 4"), Error);
  changed = source;
  changed["model"]["layers"][0]["out"] = 4;  // same shapes: only the spec tells
  changed["model"]["layers"][0]["bias"] = false;
  CHECK_THROWS_WITH_AS(load_saved_model(parse_config(changed, "other.json"), out + "/model.qf"),
                       doctest::Contains("model.layers.0.bias: the file has nothing, the config has false"),
                       Error);
  // Run settings are not part of the spec: another QAT learning rate evaluates fine.
  changed = source;
  changed["quant"]["qat"]["lr"] = 0.1;
  CHECK(load_saved_model(parse_config(changed, "other.json"), out + "/model_qat.qf"));
}
