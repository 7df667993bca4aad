// The runner the studies share (sweep, calibrate-compare, sensitivity): a study is a plan
// of runs — a method (PTQ or QAT with config overrides) at a width and a seed — over one
// fp32 model (the config's quant.fp32_checkpoint, or trained once into DIR/fp32). Each
// run is a normal run folder under DIR/runs/<name>/ with its own log.txt; its record is
// written last (sweep_run.json, with the config it ran), so a killed study continues with
// --resume and reuses exactly the runs that would run the same now. A failing run is a
// result of the study (recorded with its error); a run that could not write its files is
// not, and stops the study. After each run the study's records are rewritten
// (DIR/<stem>.json, .csv and its chart) and a progress line with an ETA is printed.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quant/qat_modules.h"
#include "train/config.h"
#include "train/stages.h"

namespace qforge::train {

// One finished run of a study.
struct SweepRecord {
  std::string method;
  int weight_bits = 0, activation_bits = 0;
  int64_t seed = 0;
  double accuracy = 0;
  double int8_accuracy = -1;  // -1: the integer runtime does not run this width
  double fp32_accuracy = 0;   // the fp32 model the run started from
  double seconds = 0;
  std::string error;  // a run that failed (a NaN loss at 1 bit, say): its message; accuracy unused
};
nlohmann::json to_json(const SweepRecord& record);

struct PlannedRun {
  SweepMethod method;
  int weight_bits = 8, activation_bits = 8;
  int64_t seed = 0;
  std::string name() const;  // "ptq_w4a4_s0": its folder under DIR/runs/
};

// The run's config: the study's, with this run's widths, overrides, seed, fp32 model and folder.
RunConfig run_config(const RunConfig& study, const PlannedRun& run, const std::string& fp32_file,
                     const std::string& run_dir);

struct RunOutcome {
  SweepRecord record;
  std::shared_ptr<quant::QatModel> prepared;  // the run's fake-quant model (null when it failed)
};
// Runs one planned run into run_dir, as `qforge ptq` / `qforge qat` would (stdout into its
// log.txt), and writes its record. `shared` (may be null): the study's datasets and fp32
// result, used when the run's data, model and eval batch size are the study's; the first
// such run's fp32 result is kept there for the next.
RunOutcome run_one(const RunConfig& study, const PlannedRun& run, const std::string& fp32_file,
                   const std::string& run_dir, SharedInputs* shared = nullptr);

struct PlanResult {
  std::vector<SweepRecord> records;  // in plan order
  // The runs' fake-quant models: null for a run reused from an earlier, killed study (its
  // model_ptq.qf / model_qat.qf is in its folder) and for a failed one.
  std::vector<std::shared_ptr<quant::QatModel>> models;
  double fp32_accuracy = 0;
  std::string fp32_file;  // the fp32 model every run started from
};
// The chart of the records so far (an SVG document; empty: none).
using ChartFunction = std::function<std::string(const std::vector<SweepRecord>&, double fp32_accuracy)>;
// Runs (or, with --resume, reuses) every planned run in order into config.output_dir.
PlanResult execute_plan(const RunConfig& config, const std::vector<PlannedRun>& plan, bool resume,
                        const std::string& stem, const ChartFunction& chart);

// "W4A8".
std::string bits_label(const SweepRecord& record);

struct Stats {
  double mean = 0, std = 0;  // std: the sample standard deviation (0 for one value)
  int count = 0;
};
Stats stats(const std::vector<double>& values);

}  // namespace qforge::train
