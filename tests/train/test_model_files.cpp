// Model files (train/model_files.h): every .qf a stage writes says its stage, whether it is
// prepared and the spec it was built with; a reader checks each field's type and the spec.
#include <doctest/doctest.h>

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

TEST_CASE("model_ptq.qf carries its spec: another config is refused, naming the first difference") {
  const std::string data = temp_folder("files_ptq_data"), out = temp_folder("files_ptq");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  const RunConfig config = parse_config(source, "test.json");
  run_ptq(config);
  const SavedModel saved = read_saved_model(out + "/model_ptq.qf");
  CHECK(saved.stage == "ptq");
  CHECK(saved.is_prepared);
  CHECK(saved.metadata["spec"].contains("quant"));
  CHECK(load_saved_model(config, out + "/model_ptq.qf"));
  json changed = source;
  changed["quant"]["weight"] = {{"bits", 4}};
  CHECK_THROWS_WITH_AS(
      load_saved_model(parse_config(changed, "other.json"), out + "/model_ptq.qf"),
      doctest::Contains("model_ptq.qf: saved with another model or quantization spec than "
                        "other.json gives: quant.weight.bits: the file has 8, the config has 4"),
      Error);
  changed = source;
  changed["quant"]["activation"] = {{"bits", 6}};
  CHECK_THROWS_WITH_AS(load_saved_model(parse_config(changed, "other.json"), out + "/model_ptq.qf"),
                       doctest::Contains("quant.activation.bits: the file has 8, the config has 6"), Error);
  // The fp32 model is no PTQ model, and a prepared model is no fp32 starting point.
  CHECK(!read_saved_model(out + "/model.qf").is_prepared);
  changed = source;
  changed["quant"] = {{"fp32_checkpoint", out + "/model_ptq.qf"}};
  changed["output"]["dir"] = temp_folder("files_ptq_again");
  CHECK_THROWS_WITH_AS(run_ptq(parse_config(changed, "test.json")),
                       doctest::Contains("quant.fp32_checkpoint: a ptq model prepared for quantization"),
                       Error);
}

TEST_CASE("metadata of the wrong JSON type names the file and the field") {
  const std::string data = temp_folder("files_meta_data"), out = temp_folder("files_meta");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 2;
  RunConfig config = parse_config(source, "test.json");
  const Datasets datasets = load_datasets(config.data);
  fit(*build_model(config, config.train.seed), config, datasets, {.stop_after_epochs = 1, .quiet = true});
  const TensorFile good = load_tensor_file(out + "/checkpoint.qf");
  // read_by_eval: a field every reader of the file reads (eval, convert), not only --resume.
  auto refused = [&](const char* field, const json& value, const char* message, bool read_by_eval = false) {
    CAPTURE(std::string(field));
    TensorFile lying = good;
    lying.metadata[field] = value;
    save_tensor_file(out + "/checkpoint.qf", lying.tensors, lying.metadata);
    CHECK_THROWS_WITH_AS(
        fit(*build_model(config, config.train.seed), config, datasets, {.resume = true, .quiet = true}),
        doctest::Contains(message), Error);
    if (read_by_eval)
      CHECK_THROWS_WITH_AS(load_saved_model(config, out + "/checkpoint.qf"), doctest::Contains(message),
                           Error);
  };
  refused("stage", 5, "checkpoint.qf: corrupt metadata (stage): expected a string, got 5", true);
  refused("kind", 5, "checkpoint.qf: corrupt metadata (kind): expected a string, got 5", true);
  refused("prepared", "yes", "checkpoint.qf: corrupt metadata (prepared): expected true or false", true);
  refused("optimizer", json::array(), "checkpoint.qf: corrupt metadata (optimizer): expected a string");
  refused("epochs", "2", "checkpoint.qf: corrupt metadata (epochs): expected an integer");
  refused("history", 3, "checkpoint.qf: corrupt metadata (history): expected an array");
  refused("seconds", "long", "checkpoint.qf: corrupt metadata (seconds): expected a number");
  TensorFile not_object = good;
  not_object.metadata = json::array();
  save_tensor_file(out + "/checkpoint.qf", not_object.tensors, not_object.metadata);
  CHECK_THROWS_WITH_AS(read_saved_model(out + "/checkpoint.qf"),
                       doctest::Contains("checkpoint.qf: corrupt metadata: expected an object"), Error);
}
