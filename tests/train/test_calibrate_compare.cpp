// The calibrator study (train/studies/calibrate_compare.h).
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

TEST_CASE("calibrate-compare crosses the calibrators with PTQ variants: nearest, AdaRound, equalization") {
  const std::string data = temp_folder("compare_variants_data"), out = temp_folder("compare_variants_out");
  write_separable_dataset(data, 256, 64);
  json source = small_config(data, out);
  source["train"]["epochs"] = 1;
  source["quant"] = {{"ptq", {{"bias_correction", true}}}};  // "nearest" turns it off
  source["calibrate_compare"] = {
      {"runs", 2},
      {"images", 64},
      {"bits", 4},
      {"methods", {"minmax", "mse"}},
      {"ptq",
       {"nearest",
        "equalize",
        {{"name", "adaround"}, {"set", {{"quant.ptq.adaround", {{"iterations", 40}, {"images", 64}}}}}}}}};
  const std::vector<SweepRecord> records = run_calibrate_compare(parse_config(source, "compare.json"), false);
  REQUIRE(records.size() == 12);  // 2 calibrators x 3 variants x 2 runs
  const std::vector<std::string> expected{
      "minmax", "minmax", "minmax+equalize", "minmax+equalize", "minmax+adaround", "minmax+adaround",
      "mse",    "mse",    "mse+equalize",    "mse+equalize",    "mse+adaround",    "mse+adaround"};
  for (std::size_t i = 0; i < records.size(); ++i) {
    CAPTURE(i);
    CHECK(records[i].method == expected[i]);
    CHECK(records[i].error.empty());
    CHECK(records[i].seed == 5 + static_cast<int64_t>(i % 2));  // every variant on the same subsets
  }
  // Each run is its calibrator's PTQ with its variant's keys, and nothing else.
  const json nearest = json::parse(read_file(out + "/runs/mse_w4a4_s5/config.json"));
  CHECK(nearest["quant"]["activation"]["observer"] == "mse");
  CHECK(nearest["quant"]["ptq"]["bias_correction"] == false);
  CHECK(nearest["quant"]["ptq"]["adaround"] == false);
  const json rounded = json::parse(read_file(out + "/runs/mse+adaround_w4a4_s6/summary.json"));
  CHECK(rounded["ptq"]["adaround"]["changed"].get<int64_t>() > 0);
  CHECK(rounded["int8_ptq"]["identical_predictions"].get<double>() >= 0.99);
  CHECK_FALSE(json::parse(read_file(out + "/runs/mse_w4a4_s6/summary.json"))["ptq"].contains("adaround"));
  const json equalized = json::parse(read_file(out + "/runs/minmax+equalize_w4a4_s5/config.json"));
  CHECK(equalized["quant"]["ptq"]["equalize"] == true);
  CHECK(equalized["quant"]["ptq"]["bias_correction"] == true);  // over the config: bias correction stays
  const std::string svg = read_file(out + "/compare.svg");
  CHECK(svg.find(">mse+adaround</text>") != std::string::npos);

  source["calibrate_compare"]["ptq"] = {"nearest", "rtn"};
  CHECK_THROWS_WITH_AS(parse_config(source, "compare.json"),
                       doctest::Contains("calibrate_compare.ptq: unknown PTQ variant \"rtn\""), Error);
  source["calibrate_compare"]["ptq"] = {"adaround", "adaround"};
  CHECK_THROWS_WITH_AS(parse_config(source, "compare.json"),
                       doctest::Contains("PTQ variant \"adaround\" appears twice"), Error);
  source["calibrate_compare"]["ptq"] = {{{"name", "x"}, {"set", {{"quant.activation.observer", "max"}}}}};
  CHECK_THROWS_WITH_AS(
      parse_config(source, "compare.json"),
      doctest::Contains("calibrate_compare.ptq.0.set: quant.activation.observer is the study's own"), Error);
}
