// The studies' runner: --resume reuses a finished run only when it would run with the same
// config now; a run that failed to write its files is no result and runs again.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>

#include <filesystem>

#include "core/file_io.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/studies/calibrate_compare.h"
#include "train/studies/sensitivity.h"
#include "train/studies/sweep.h"

using namespace qforge;
using namespace qforge::train;
using namespace qforge::testing;
using nlohmann::json;

namespace {
std::filesystem::file_time_type written(const std::string& path) {
  return std::filesystem::last_write_time(path);
}

// Files larger than `bytes` cannot be written while it lives (a full disk, as the process sees it).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    previous_ = ::signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead of killing us
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, previous_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  sighandler_t previous_{};
};
}  // namespace

TEST_CASE("sweep --resume reuses a run only with the config it would run now; an I/O failure is retried") {
  const std::string data = temp_folder("runner_data"), out = temp_folder("runner_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["quant"] = {{"ptq", {{"calibration_batches", 2}}}};
  source["sweep"] = {{"bits", {4, 8}}, {"seeds", 1}, {"methods", {"ptq"}}};
  const RunConfig config = parse_config(source, "sweep.json");
  const std::vector<SweepRecord> first = run_sweep(config, false);
  REQUIRE(first.size() == 2);
  const std::string marker = out + "/runs/ptq_w4a4_s5/sweep_run.json";
  const auto when = written(marker);
  // Same config: both reused.
  run_sweep(config, true);
  CHECK(written(marker) == when);
  // Another weight scheme: every run is run again, under the new config.
  json per_tensor = source;
  per_tensor["quant"]["weight"] = {{"per_channel", false}};
  run_sweep(parse_config(per_tensor, "sweep.json"), true);
  CHECK(written(marker) != when);
  CHECK(json::parse(read_file(marker))["config"]["quant"]["weight"]["per_channel"] == false);
  const auto per_tensor_when = written(marker);
  run_sweep(parse_config(per_tensor, "sweep.json"), true);
  CHECK(written(marker) == per_tensor_when);

  // A run whose files cannot be written (a full disk) stops the study and leaves no marker.
  std::filesystem::remove(marker);
  {
    FileSizeLimit full_disk(256);
    CHECK_THROWS_AS(run_sweep(parse_config(per_tensor, "sweep.json"), true), IoError);
  }
  CHECK(!std::filesystem::exists(marker));
  const std::vector<SweepRecord> again = run_sweep(parse_config(per_tensor, "sweep.json"), true);
  CHECK(std::filesystem::exists(marker));
  CHECK(again[0].error.empty());
}

TEST_CASE(
    "run_one: runs given the study's datasets and fp32 result record what a run alone records; a run "
    "with other data gets neither") {
  const std::string data = temp_folder("shared_data"), out = temp_folder("shared_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["quant"] = {{"ptq", {{"calibration_batches", 2}}}, {"qat", {{"epochs", 1}}}};
  source["sweep"] = {{"bits", {4}}, {"seeds", 1}, {"methods", {"ptq"}}};
  const RunConfig config = parse_config(source, "sweep.json");
  run_sweep(config, false);  // trains the fp32 model the runs start from
  const std::string fp32_file = out + "/fp32/model.qf";
  REQUIRE(std::filesystem::exists(fp32_file));
  const Datasets datasets = load_datasets(config.data);
  for (const StageKind kind : {StageKind::ptq, StageKind::qat}) {
    const std::string name = kind == StageKind::ptq ? "ptq" : "qat";
    CAPTURE(name);
    const PlannedRun run{{.name = name, .kind = kind}, 4, 4, 5};
    const SweepRecord alone = run_one(config, run, fp32_file, out + "/alone_" + name).record;
    SharedInputs shared{.datasets = &datasets};
    const SweepRecord first = run_one(config, run, fp32_file, out + "/first_" + name, &shared).record;
    REQUIRE(shared.fp32.has_value());  // kept from the first run, for the next
    CHECK(shared.fp32_checkpoint == fp32_file);
    const SweepRecord second = run_one(config, run, fp32_file, out + "/second_" + name, &shared).record;
    const json alone_summary = json::parse(read_file(out + "/alone_" + name + "/summary.json"));
    for (const std::string& folder : {"first_" + name, "second_" + name}) {
      CAPTURE(folder);
      const json summary = json::parse(read_file(out + "/" + folder + "/summary.json"));
      CHECK(summary["fp32"] == alone_summary["fp32"]);
      for (const char* key : {"accuracy", "loss"}) CHECK(summary[name][key] == alone_summary[name][key]);
      CHECK(summary["int8" + std::string(kind == StageKind::ptq ? "_ptq" : "")]["accuracy"] ==
            alone_summary["int8" + std::string(kind == StageKind::ptq ? "_ptq" : "")]["accuracy"]);
    }
    for (const SweepRecord* r : {&first, &second}) {
      CHECK(r->error.empty());
      CHECK(r->accuracy == alone.accuracy);
      CHECK(r->int8_accuracy == alone.int8_accuracy);
      CHECK(r->fp32_accuracy == alone.fp32_accuracy);
    }
  }
  // A planted fp32 result shows through where the run shares (so the test above could fail),
  // and never where a method changes the data.
  const SharedInputs planted{.datasets = &datasets,
                             .fp32_checkpoint = fp32_file,
                             .fp32 = StageSummary{"fp32", 0.125, 1.0, 0, 0, 0, {{"checkpoint", fp32_file}}}};
  SharedInputs given = planted;
  const PlannedRun same{{.name = "ptq", .kind = StageKind::ptq}, 4, 4, 5};
  CHECK(run_one(config, same, fp32_file, out + "/planted", &given).record.fp32_accuracy == 0.125);
  given = planted;
  const PlannedRun other_data{
      {.name = "ptq", .kind = StageKind::ptq, .set = {{"data.normalize.mean", 0.4}}}, 4, 4, 5};
  const SweepRecord own = run_one(config, other_data, fp32_file, out + "/other_data", &given).record;
  CHECK(own.error.empty());
  CHECK(own.fp32_accuracy != 0.125);
}
