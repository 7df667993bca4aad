// The bit-width study (train/studies/sweep.h).
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

TEST_CASE("sweep: a method with its own bits runs only at those widths (binary weights at 1 bit)") {
  json source = small_config("unused_data", "unused_out");
  source["sweep"] = {{"bits", {1, 2, 8}},
                     {"seeds", 2},
                     {"methods",
                      {"qat",
                       {{"name", "binary"},
                        {"bits", {1}},
                        {"set", {{"quant.weight.binary", true}, {"quant.weight.learnable", true}}}}}}};
  const RunConfig config = parse_config(source, "sweep.json");
  const std::vector<PlannedRun> plan = plan_sweep(config.sweep, 0);
  REQUIRE(plan.size() == 8);  // qat at 3 widths × 2 seeds, binary at 1 bit × 2 seeds
  int binary = 0;
  for (const PlannedRun& run : plan)
    if (run.method.name == "binary") {
      ++binary;
      CHECK(run.weight_bits == 1);
      CHECK(run.activation_bits == 1);
      // The run's config takes the method's overrides at its width: a binary 1-bit weight quantizer.
      const RunConfig one = run_config(config, run, "fp32.qf", "run_dir");
      CHECK(one.quant.spec.defaults.weight.scheme.binary);
      CHECK(one.quant.spec.defaults.weight.scheme.bits == 1);
    }
  CHECK(binary == 2);
  source["sweep"]["methods"][1]["bits"] = {4};
  CHECK_THROWS_WITH_AS(
      parse_config(source, "sweep.json"),
      doctest::Contains("sweep.methods: method \"binary\" runs at 4 bits, which sweep.bits does not list"),
      Error);
  source["sweep"]["methods"][1]["bits"] = json::array();
  CHECK_THROWS_WITH_AS(parse_config(source, "sweep.json"),
                       doctest::Contains("sweep.methods.1.bits: expected at least one width"), Error);
}
