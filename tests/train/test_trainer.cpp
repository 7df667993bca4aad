// The training loop (train/trainer.h): a run checks its inputs first, learns, resumes
// bit-exactly and stops on a NaN loss keeping the last good checkpoint.
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

TEST_CASE("a zoo model on images of another size is one error naming the model, the data and the size") {
  const std::string data = temp_folder("size_data"), out = temp_folder("size_out");
  write_separable_dataset(data, 64, 32);  // 8x8 images; lenet is built for 28x28
  json source = small_config(data, out);
  source["model"] = {{"name", "lenet"}};
  const RunConfig config = parse_config(source, "test.json");
  CHECK_THROWS_WITH_AS(
      start_run(config, {"model.qf"}, false),
      doctest::Contains(("test.json: model lenet cannot take the [1,8,8] images of " + data).c_str()), Error);
  CHECK(!std::filesystem::exists(out + "/config.json"));
}
