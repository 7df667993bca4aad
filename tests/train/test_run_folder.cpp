// Run folders (train/run_folder.h): one run at a time per folder; --force leaves nothing of
// the run it replaces, and nothing the new run reads.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>

#include "core/file_io.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/run_folder.h"
#include "train/stages.h"
#include "train/trainer.h"

using namespace qforge;
using namespace qforge::train;
using namespace qforge::testing;
using nlohmann::json;

TEST_CASE("a run folder is held by one run: a second is refused, naming the folder and the holder") {
  const std::string dir = temp_folder("folder_lock") + "/run";
  {
    RunFolder first = RunFolder::claim(dir);
    const std::string expected =
        dir + " is in use by another qforge run (pid " + std::to_string(::getpid()) + ")";
    CHECK_THROWS_WITH_AS(RunFolder::claim(dir), doctest::Contains(expected.c_str()), Error);
    RunFolder moved = std::move(first);  // the lock moves with the folder
    CHECK_THROWS_AS(RunFolder::claim(dir), Error);
  }
  CHECK(RunFolder::claim(dir).path() == dir);  // released when the run ends

  // start_run claims it too: a run on a folder another run holds writes nothing.
  const std::string data = temp_folder("folder_lock_data");
  write_separable_dataset(data, 64, 32);
  const RunConfig config = parse_config(small_config(data, dir), "test.json");
  const RunFolder holder = RunFolder::claim(dir);
  CHECK_THROWS_WITH_AS(start_run(config, {"model.qf"}, false),
                       doctest::Contains("is in use by another qforge run"), Error);
  CHECK(!std::filesystem::exists(dir + "/config.json"));
}

TEST_CASE("--force over a finished QAT folder leaves only what the new run writes, and keeps its inputs") {
  const std::string data = temp_folder("folder_force_data"), out = temp_folder("folder_force");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["quant"] = {{"qat", {{"epochs", 1}}}};
  RunConfig config = parse_config(source, "test.json");
  run_qat(config, false);
  for (const char* file : {"/model_qat.qf", "/model_qat.qfm", "/checkpoint_qat.qf", "/metrics_qat.jsonl"})
    REQUIRE(std::filesystem::exists(out + file));
  write_file_atomically(out + "/notes.txt", "mine\n");  // not a run's file: left alone
  // `qforge train --force` into it: an fp32 run.
  config.force = true;
  {
    StartedRun run = start_run(config, {"model.qf"}, false);
    fit(*build_model(config, config.train.seed), config, run.datasets, {.quiet = true});
  }
  for (const char* file : {"/model_qat.qf", "/model_qat.qfm", "/checkpoint_qat.qf", "/metrics_qat.jsonl"})
    CHECK(!std::filesystem::exists(out + file));
  const json summary = json::parse(read_file(out + "/summary.json"));
  CHECK(summary["stages"].size() == 1);
  CHECK(summary["stages"][0]["stage"] == "fp32");
  CHECK(!summary.contains("qat"));
  CHECK(read_file(out + "/notes.txt") == "mine\n");
  // QAT --force from the fp32 model in the same folder: that model is the run's input, kept.
  json from_here = source;
  from_here["quant"]["fp32_checkpoint"] = out + "/model.qf";
  RunConfig qat = parse_config(from_here, "test.json");
  qat.force = true;
  const std::string fp32_bytes = read_file(out + "/model.qf");
  run_qat(qat, false);
  CHECK(read_file(out + "/model.qf") == fp32_bytes);
  CHECK(std::filesystem::exists(out + "/model_qat.qfm"));
}
