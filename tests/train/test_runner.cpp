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
