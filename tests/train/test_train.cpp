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

TEST_CASE("a run writes nothing before its inputs are checked, and never replaces a finished run unasked") {
  const std::string data = temp_folder("guard_data"), out = temp_folder("guard_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  RunConfig config = parse_config(source, "test.json");
  fit(*build_model(config, 0), config, load_datasets(config.data), {.quiet = true});  // a finished run
  write_file_atomically(out + "/config.json", "original\n");
  write_file_atomically(out + "/stale.qf.tmp.999999999", "left by a killed run");
  CHECK_THROWS_WITH_AS(start_run(config, {"model.qf"}, false), doctest::Contains("holds a finished run"),
                       Error);
  // A bad data path fails before anything is written.
  RunConfig broken = config;
  broken.data.path = data + "/missing";
  broken.force = true;
  CHECK_THROWS_AS(start_run(broken, {"model.qf"}, false), Error);
  CHECK(read_file(out + "/config.json") == "original\n");
  // A label the model has no output for names its file and index.
  const std::string bad_labels = temp_folder("guard_bad_labels");
  write_separable_dataset(bad_labels, 256, 64);
  std::vector<uint8_t> labels(64, 1);
  labels[60] = 200;
  data::write_idx(bad_labels + "/t10k-labels-idx1-ubyte", {64}, labels);
  RunConfig mislabelled = config;
  mislabelled.data.path = bad_labels;
  mislabelled.force = true;
  CHECK_THROWS_WITH_AS(start_run(mislabelled, {"model.qf"}, false),
                       doctest::Contains("t10k-labels-idx1-ubyte: label 200 at index 60 is outside 0..1"),
                       Error);
  CHECK(read_file(out + "/config.json") == "original\n");
  config.force = true;
  start_run(config, {"model.qf"}, false);
  CHECK(read_file(out + "/config.json") != "original\n");
  CHECK_FALSE(std::filesystem::exists(out + "/stale.qf.tmp.999999999"));
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

TEST_CASE("schedules: warmup, step and cosine") {
  ScheduleConfig cosine{.type = "cosine", .warmup_epochs = 1};
  CHECK(scheduled_learning_rate(cosine, 0.1, 0.5, 5) == doctest::Approx(0.05));
  CHECK(scheduled_learning_rate(cosine, 0.1, 1.0, 5) == doctest::Approx(0.1));
  CHECK(scheduled_learning_rate(cosine, 0.1, 3.0, 5) == doctest::Approx(0.05));
  CHECK(scheduled_learning_rate(cosine, 0.1, 5.0, 5) == doctest::Approx(0.0));
  ScheduleConfig step{.type = "step", .step_size = 2, .gamma = 0.5};
  CHECK(scheduled_learning_rate(step, 0.1, 3.5, 5) == doctest::Approx(0.05));
}

TEST_CASE("SGD with momentum and Adam follow PyTorch's update rules") {
  // One parameter, gradient 1 each step. torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=False):
  // steps move by 0.1, 0.19, 0.271. Adam(lr=0.1): each early step moves by ~lr.
  Tensor w = Tensor::full({1}, 1.0f).set_requires_grad(true);
  Sgd sgd({w}, {.lr = 0.1, .momentum = 0.9});
  for (int i = 0; i < 3; ++i) {
    w.set_grad(Tensor::ones({1}));
    sgd.step();
  }
  CHECK(w.item() == doctest::Approx(1.0 - 0.1 - 0.19 - 0.271));
  Tensor v = Tensor::full({1}, 1.0f).set_requires_grad(true);
  Adam adam({v}, {.type = "adam", .lr = 0.1});
  v.set_grad(Tensor::ones({1}));
  adam.step();
  CHECK(v.item() == doctest::Approx(0.9).epsilon(1e-6));
}

TEST_CASE("a small model learns a separable task to >= 99%") {
  const std::string data = temp_folder("separable_data"), out = temp_folder("separable_out");
  write_separable_dataset(data, 1024, 512);
  RunConfig config = parse_config(small_config(data, out), "test.json");
  Datasets datasets = load_datasets(config.data);
  nn::ModulePtr model = build_model(config, config.train.seed);
  StageSummary summary = fit(*model, config, datasets, {.quiet = true});
  CHECK(summary.accuracy >= 0.99);
  json written = json::parse(read_file(out + "/summary.json"));
  CHECK(written["fp32"]["accuracy"] == doctest::Approx(summary.accuracy));
  CHECK(written["stages"][0]["stage"] == "fp32");
  for (const char* key : {"loss", "images_per_second", "seconds"}) CHECK(written["fp32"].contains(key));
}

TEST_CASE("resuming from a checkpoint reproduces the uninterrupted run") {
  const std::string data = temp_folder("resume_data");
  write_separable_dataset(data, 256, 64);
  const std::string straight = temp_folder("resume_straight"), split = temp_folder("resume_split");
  json source = small_config(data, straight);
  // With dropout: its random state must come back from the checkpoint too.
  source["model"]["layers"].insert(source["model"]["layers"].begin() + 5,
                                   json{{"type", "dropout"}, {"p", 0.3}});
  RunConfig config = parse_config(source, "test.json");
  Datasets datasets = load_datasets(config.data);
  nn::ModulePtr a = build_model(config, config.train.seed);
  fit(*a, config, datasets, {.output_dir = straight, .quiet = true});
  nn::ModulePtr b = build_model(config, config.train.seed);
  fit(*b, config, datasets, {.output_dir = split, .quiet = true});
  // Interrupted after 2 of 3 epochs: rerun the first two, then resume with a fresh model.
  const std::string interrupted = temp_folder("resume_interrupted");
  nn::ModulePtr c = build_model(config, config.train.seed);
  fit(*c, config, datasets, {.output_dir = interrupted, .stop_after_epochs = 2, .quiet = true});
  CHECK(load_tensor_file(interrupted + "/checkpoint.qf").metadata["epochs_done"] == 2);
  nn::ModulePtr d = build_model(config, 999);  // different init: everything must come from the checkpoint
  fit(*d, config, datasets, {.output_dir = interrupted, .resume = true, .quiet = true});
  for (auto& [name, tensor] : a->state_dict()) {
    const std::string captured_name(name);
    CAPTURE(captured_name);
    CHECK(tensor.to_vector() == d->state_dict().at(name).to_vector());
    CHECK(tensor.to_vector() == b->state_dict().at(name).to_vector());  // same seed, same run
  }
}

TEST_CASE("a NaN loss stops with a clear error and keeps the last good checkpoint") {
  const std::string data = temp_folder("nan_data"), out = temp_folder("nan_out");
  write_separable_dataset(data, 256, 64);
  RunConfig config = parse_config(small_config(data, out), "test.json");
  config.train.epochs = 3;
  Datasets datasets = load_datasets(config.data);
  nn::ModulePtr model = build_model(config, config.train.seed);
  fit(*model, config, datasets, {.stop_after_epochs = 1, .quiet = true});  // interrupted after epoch 1
  const std::string good = read_file(out + "/checkpoint.qf");
  // Resuming with another epoch count would rewrite the finished epochs' schedule: refused.
  config.train.epochs = 4;
  CHECK_THROWS_WITH_AS(fit(*model, config, datasets, {.resume = true, .quiet = true}),
                       doctest::Contains("the run was scheduled over 3 epochs, the config says 4"), Error);
  config.train.epochs = 3;
  config.train.optimizer.type = "adam";
  CHECK_THROWS_WITH_AS(fit(*model, config, datasets, {.resume = true, .quiet = true}),
                       doctest::Contains("trained with sgd, the config says adam"), Error);
  config.train.optimizer.type = "sgd";
  config.train.optimizer.lr = 1e30;
  config.train.schedule.type = "none";
  CHECK_THROWS_WITH_AS(fit(*model, config, datasets, {.resume = true, .quiet = true}),
                       doctest::Contains("loss is"), Error);
  CHECK(read_file(out + "/checkpoint.qf") == good);
  CHECK(load_tensor_file(out + "/checkpoint.qf").metadata["epochs_done"] == 1);
  // Metadata that parses but lies (re-saved with a valid checksum): named, not a JSON
  // library error.
  config.train.optimizer.lr = 0.05;
  TensorFile lying = load_tensor_file(out + "/checkpoint.qf");
  lying.metadata["epochs_done"] = "one";
  save_tensor_file(out + "/checkpoint.qf", lying.tensors, lying.metadata);
  CHECK_THROWS_WITH_AS(fit(*model, config, datasets, {.resume = true, .quiet = true}),
                       doctest::Contains("checkpoint.qf: corrupt metadata (epochs_done)"), Error);
}

TEST_CASE("qat distils from the fp32 model when asked") {
  const std::string data = temp_folder("distill_data");
  write_separable_dataset(data, 1024, 512, 15);
  json source = small_config(data, temp_folder("distill_out"));
  RunConfig fp32 = parse_config(source, "test.json");
  fit(*build_model(fp32, fp32.train.seed), fp32, load_datasets(fp32.data), {.quiet = true});
  const std::string checkpoint = fp32.output_dir + "/model.qf";
  auto qat_train_loss = [&](const json& distillation, const std::string& name) {
    json q = source;
    q["output"]["dir"] = temp_folder(name);
    q["quant"] = {{"fp32_checkpoint", checkpoint}, {"qat", {{"epochs", 1}}}};
    if (!distillation.is_null()) q["quant"]["qat"]["distillation"] = distillation;
    run_qat(parse_config(q, "test.json"), false);
    json summary = json::parse(read_file(q["output"]["dir"].get<std::string>() + "/summary.json"));
    CHECK(summary["qat"]["accuracy"].get<double>() >= summary["fp32"]["accuracy"].get<double>() - 0.02);
    return json::parse(read_file(q["output"]["dir"].get<std::string>() + "/metrics_qat.jsonl"))["train_loss"]
        .get<double>();
  };
  // Pure distillation: the loss is the KL divergence from the teacher, which an 8-bit
  // student starts almost on; the cross-entropy on these overlapping classes is not small.
  const double cross_entropy_loss = qat_train_loss(nullptr, "distill_ce");
  const double kl_loss = qat_train_loss({{"weight", 1.0}, {"temperature", 1.0}}, "distill_kd");
  MESSAGE("qat train loss: cross-entropy ", cross_entropy_loss, ", distillation ", kl_loss);
  CHECK(kl_loss < 0.2 * cross_entropy_loss);
  source["quant"] = {{"qat", {{"distillation", {{"weight", 1.5}}}}}};
  CHECK_THROWS_WITH_AS(parse_config(source, "test.json"),
                       doctest::Contains("quant.qat.distillation.weight: expected a number in [0, 1]"),
                       Error);
}

TEST_CASE("qat can calibrate first and then train with frozen observers") {
  const std::string data = temp_folder("calibrate_first_data");
  write_separable_dataset(data, 512, 256);
  json source = small_config(data, temp_folder("calibrate_first_out"));
  source["quant"] = {{"qat", {{"epochs", 1}, {"freeze_observers_epoch", 0}}}};
  CHECK_THROWS_WITH_AS(parse_config(source, "test.json"),
                       doctest::Contains("quant.qat.freeze_observers_epoch: 0 freezes observers before"),
                       Error);
  // A calibrator (costly per batch) calibrated once, then frozen through QAT.
  source["quant"]["qat"]["calibration_batches"] = 4;
  source["quant"]["activation"] = {{"observer", "mse"}, {"symmetric", true}, {"signed", true}};
  RunConfig config = parse_config(source, "test.json");
  run_qat(config, false);
  json summary = json::parse(read_file(config.output_dir + "/summary.json"));
  CHECK(summary["qat"]["accuracy"].get<double>() >= 0.99);
  // The quantizers hold calibrated parameters (scale 1, the untouched initial value, would
  // not survive calibration on these inputs).
  nn::ModulePtr model = load_saved_model(config, config.output_dir + "/model_qat.qf");
  TensorMap state = model->state_dict();
  CHECK(state.at("input_quant.scale").item() != 1.0f);
  CHECK(state.at("input_quant.scale").item() > 0.0f);
}

TEST_CASE("qat and ptq stages run from a config and record their accuracy") {
  const std::string data = temp_folder("quant_data"), out = temp_folder("quant_out");
  write_separable_dataset(data, 1024, 512);
  json source = small_config(data, out);
  source["train"]["epochs"] = 2;
  source["quant"] = {{"qat", {{"epochs", 1}, {"freeze_bn_epoch", 0}}}, {"ptq", {{"calibration_batches", 8}}}};
  RunConfig config = parse_config(source, "test.json");
  run_qat(config, false);
  // PTQ into the same folder trains fp32 again (model.qf): refused unless asked.
  CHECK_THROWS_WITH_AS(run_ptq(config), doctest::Contains("holds a finished run (model.qf); pass --force"),
                       Error);
  // (--force would clear the QAT run first: train/run_folder.h.) PTQ from the fp32 model
  // the QAT run trained, beside it in the same folder:
  json from_fp32 = source;
  from_fp32["quant"]["fp32_checkpoint"] = out + "/model.qf";
  run_ptq(parse_config(from_fp32, "test.json"));
  json summary = json::parse(read_file(out + "/summary.json"));
  CHECK(summary["fp32"]["accuracy"].get<double>() >= 0.99);
  CHECK(summary["qat"]["accuracy"].get<double>() >= 0.99);
  CHECK(summary["ptq"]["accuracy"].get<double>() >= 0.98);
  CHECK(summary["ptq"]["calibration_batches"] == 8);
  for (const char* file :
       {"/model.qf", "/model_qat.qf", "/model_ptq.qf", "/checkpoint_qat.qf", "/metrics_qat.jsonl"})
    CHECK(std::filesystem::exists(out + file));
  // The saved prepared models evaluate as recorded (what `qforge eval` runs).
  for (auto [file, stage] : {std::pair{"/model_qat.qf", "qat"}, std::pair{"/checkpoint_qat.qf", "qat"},
                             std::pair{"/model_ptq.qf", "ptq"}, std::pair{"/model.qf", "fp32"}}) {
    EvalResult reloaded = evaluate(*load_saved_model(config, out + file), load_datasets(config.data).test,
                                   config.train.eval_batch_size);
    const std::string captured_file(file);
    CAPTURE(captured_file);
    CHECK(reloaded.accuracy == summary[stage]["accuracy"].get<double>());
    CHECK(reloaded.loss == doctest::Approx(summary[stage]["loss"].get<double>()).epsilon(1e-5));
  }
  // A 2-bit PTQ is measurably worse than fp32 on the same model (the task is easy enough
  // that accuracy survives, the loss does not): the simulation is real.
  source["quant"]["weight"] = {{"bits", 2}};
  source["quant"]["activation"] = {{"bits", 2}};
  // On overlapping classes (brightness 15 against noise 0..120) the loss is not ~0.
  const std::string hard = temp_folder("quant_hard_data"), hard_out = temp_folder("quant_hard_out");
  write_separable_dataset(hard, 1024, 512, 15);
  source["data"]["path"] = hard;
  source["output"]["dir"] = hard_out;
  source["quant"].erase("weight"), source["quant"].erase("activation");
  run_ptq(parse_config(source, "test.json"));  // trains fp32, then 8-bit PTQ
  json eight = json::parse(read_file(hard_out + "/summary.json"));
  source["quant"]["weight"] = {{"bits", 2}};
  source["quant"]["activation"] = {{"bits", 2}};
  source["quant"]["fp32_checkpoint"] = hard_out + "/model.qf";
  source["output"]["dir"] = temp_folder("quant_hard_2bit");
  run_ptq(parse_config(source, "test.json"));
  json two = json::parse(read_file(source["output"]["dir"].get<std::string>() + "/summary.json"));
  const double fp32_loss = eight["fp32"]["loss"], loss8 = eight["ptq"]["loss"], loss2 = two["ptq"]["loss"];
  MESSAGE("fp32 loss ", fp32_loss, ", 8-bit ptq ", loss8, ", 2-bit ptq ", loss2);
  CHECK(std::abs(loss8 - fp32_loss) < 0.1 * fp32_loss);
  CHECK(loss2 > 1.2 * fp32_loss);
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

TEST_CASE("sweep: PTQ and QAT at each width and seed, table, csv, json, svg; --resume reuses finished runs") {
  const std::string data = temp_folder("sweep_data"), out = temp_folder("sweep_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["quant"] = {{"qat", {{"epochs", 1}}}, {"ptq", {{"calibration_batches", 4}}}};
  source["sweep"] = {
      {"bits", {2, 8}},
      {"seeds", 2},
      {"methods", {"ptq", {{"name", "qat_fast"}, {"kind", "qat"}, {"set", {{"quant.qat.lr", 0.01}}}}}}};
  RunConfig config = parse_config(source, "sweep.json");
  const std::vector<SweepRecord> records = run_sweep(config, false);
  REQUIRE(records.size() == 8);  // 2 widths × 2 methods × 2 seeds
  CHECK(records[0].method == "ptq");
  CHECK(records[0].weight_bits == 2);
  CHECK(records[2].method == "qat_fast");
  CHECK(records[3].seed == 6);  // train.seed 5, then 6
  for (const SweepRecord& r : records) {
    CHECK(r.accuracy > 0.4);
    CHECK(r.int8_accuracy == doctest::Approx(r.accuracy).epsilon(0.05));  // 2..8 bits run as integers
  }
  const json saved = json::parse(read_file(out + "/sweep.json"));
  CHECK(saved["runs"].size() == 8);
  CHECK(saved["runs"][7]["activation_bits"] == 8);
  CHECK(saved["fp32_accuracy"].get<double>() > 0.5);
  const std::string csv = read_file(out + "/sweep.csv");
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 9);
  CHECK(csv.rfind("method,weight_bits,activation_bits,seed,accuracy,int8_accuracy,seconds\n", 0) == 0);
  const std::string svg = read_file(out + "/sweep.svg");
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  auto count = [&](const std::string& what) {
    int64_t n = 0;
    for (std::size_t at = svg.find(what); at != std::string::npos; at = svg.find(what, at + 1)) ++n;
    return n;
  };
  CHECK(count("<polyline class=\"method\"") == 2);  // one line per method
  CHECK(count("class=\"legend\"") == 3);            // two methods and fp32
  CHECK(svg.find("test accuracy (%)") != std::string::npos);
  CHECK(svg.find("bits (weights and activations)") != std::string::npos);
  // A finished sweep is not replaced by accident; --resume reads every run back.
  CHECK_THROWS_WITH_AS(run_sweep(config, false), doctest::Contains("holds a finished sweep"), Error);
  const auto marker = std::filesystem::last_write_time(out + "/runs/ptq_w2a2_s5/sweep_run.json");
  const std::vector<SweepRecord> again = run_sweep(config, true);
  CHECK(again.size() == 8);
  CHECK(again[5].accuracy == records[5].accuracy);
  CHECK(std::filesystem::last_write_time(out + "/runs/ptq_w2a2_s5/sweep_run.json") == marker);
  // Bad sections are named.
  source["sweep"] = {{"methods", {"kl"}}};
  CHECK_THROWS_WITH_AS(parse_config(source, "sweep.json"),
                       doctest::Contains("sweep.methods: unknown method \"kl\""), Error);
  source["sweep"] = {{"bits", {0}}};
  CHECK_THROWS_WITH_AS(parse_config(source, "sweep.json"),
                       doctest::Contains("sweep.bits: expected whole widths"), Error);
}

TEST_CASE("calibrate-compare: each method on several random calibration subsets, table and box plot") {
  const std::string data = temp_folder("compare_data"), out = temp_folder("compare_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["calibrate_compare"] = {
      {"runs", 3}, {"images", 32}, {"methods", {"minmax", "percentile:99.9", "mse"}}};
  const std::vector<SweepRecord> records = run_calibrate_compare(parse_config(source, "compare.json"), false);
  REQUIRE(records.size() == 9);
  CHECK(records[3].method == "percentile:99.9");
  CHECK(records[5].seed == 7);  // train.seed 5, 6, 7: three different subsets
  for (const SweepRecord& r : records) CHECK(r.error.empty());
  // Each run calibrated on ceil(32 / 16) = 2 batches.
  CHECK(json::parse(read_file(out + "/runs/mse_w8a8_s6/summary.json"))["ptq"]["calibration_batches"] == 2);
  const std::string svg = read_file(out + "/compare.svg");
  int64_t boxes = 0;
  for (std::size_t at = svg.find("class=\"box\""); at != std::string::npos;
       at = svg.find("class=\"box\"", at + 1))
    ++boxes;
  CHECK(boxes == 3);
  CHECK(svg.find(">percentile:99.9</text>") != std::string::npos);
  CHECK(json::parse(read_file(out + "/compare.json"))["runs"].size() == 9);
  source["calibrate_compare"] = {{"methods", {"kl"}}};
  CHECK_THROWS_WITH_AS(parse_config(source, "compare.json"),
                       doctest::Contains("calibrate_compare.methods: observer: unknown kind \"kl\""), Error);
}

TEST_CASE(
    "sensitivity: only / all-but each layer, SQNRs, ranked; a mixed-precision config that reaches the "
    "target") {
  const std::string data = temp_folder("sensitivity_data"), out = temp_folder("sensitivity_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["quant"] = {{"qat", {{"epochs", 1}}}, {"ptq", {{"calibration_batches", 4}}}};
  source["sensitivity"] = {{"bits", 2}};
  const std::vector<LayerSensitivity> layers =
      run_sensitivity(parse_config(source, "sensitivity.json"), false, 0.99);
  REQUIRE(layers.size() == 3);  // the conv and the linear layer of small_config, and the input
  for (std::size_t i = 0; i + 1 < layers.size(); ++i)
    CHECK(layers[i].only_accuracy <= layers[i + 1].only_accuracy);
  for (const LayerSensitivity& s : layers) {
    CAPTURE(s.layer);
    if (s.type == "Input") {
      CHECK(std::isnan(s.weight_sqnr));  // no weights
    } else {
      CHECK(s.weight_sqnr > 0);
      CHECK(s.weight_sqnr < 30);  // 2 bits
    }
    CHECK(std::isfinite(s.output_sqnr));  // every layer's own output, all quantized vs fused float
    CHECK(s.output_sqnr > 0);
    CHECK(s.output_sqnr < 30);  // 2 bits
    CHECK(std::isfinite(s.logits_sqnr));
  }
  const json report = json::parse(read_file(out + "/sensitivity.json"));
  CHECK(report["layers"].size() == 3);
  CHECK(report["suggestion"]["target_accuracy"] == 0.99);
  // The suggestion is a config qforge runs: its overrides name real layers at 8 bits.
  const RunConfig suggested = parse_config(json::parse(read_file(out + "/suggested.json")), "suggested.json");
  CHECK(suggested.quant.spec.defaults.weight.scheme.bits == 2);
  for (const quant::QConfigOverride& o : suggested.quant.spec.overrides)
    CHECK(o.qconfig.weight.scheme.bits == 8);
  CHECK(read_file(out + "/sensitivity.svg").find("class=\"bar\"") != std::string::npos);
}
