#include "train/studies/calibrate_compare.h"

#include <algorithm>
#include <cstdio>

#include "quant/observer.h"
#include "train/studies/charts.h"

namespace qforge::train {

namespace {

int64_t calibration_batches(const RunConfig& config) {
  return (config.calibrate_compare.images + config.train.batch_size - 1) / config.train.batch_size;
}

// Per method: the mean, min and max over the runs (and the integer model's mean).
void print_compare_table(const RunConfig& config, const std::vector<SweepRecord>& records,
                         double fp32_accuracy) {
  const CompareConfig& compare = config.calibrate_compare;
  std::printf("\nPTQ at %d bits, %lld calibration runs of %lld images each (fp32 %.2f%%)\n", compare.bits,
              static_cast<long long>(compare.runs),
              static_cast<long long>(calibration_batches(config) * config.train.batch_size),
              100 * fp32_accuracy);
  std::vector<std::string> methods;  // calibrator (+ PTQ variant), in the plan's order
  for (const PlannedRun& run : plan_calibrate_compare(config))
    if (std::find(methods.begin(), methods.end(), run.method.name) == methods.end())
      methods.push_back(run.method.name);
  std::printf("%-28s %8s %8s %8s %10s\n", "method", "mean", "min", "max", "int8 mean");
  for (const std::string& method : methods) {
    std::vector<double> values, int8;
    int failed = 0;
    for (const SweepRecord& r : records) {
      if (r.method != method) continue;
      failed += !r.error.empty();
      if (!r.error.empty()) continue;
      values.push_back(100 * r.accuracy);
      if (r.int8_accuracy >= 0) int8.push_back(100 * r.int8_accuracy);
    }
    if (values.empty()) {
      std::printf("%-28s %d failed\n", method.c_str(), failed);
      continue;
    }
    const auto [low, high] = std::minmax_element(values.begin(), values.end());
    char int8_mean[16] = "-";
    if (!int8.empty()) std::snprintf(int8_mean, sizeof int8_mean, "%.2f", stats(int8).mean);
    std::printf("%-28s %8.2f %8.2f %8.2f %10s%s\n", method.c_str(), stats(values).mean, *low, *high,
                int8_mean, failed ? " (some runs failed)" : "");
  }
}

}  // namespace

std::vector<PlannedRun> plan_calibrate_compare(const RunConfig& config) {
  const CompareConfig& compare = config.calibrate_compare;
  std::vector<PlannedRun> plan;
  for (const std::string& method : compare.methods) {
    const quant::ObserverChoice choice = quant::ObserverChoice::parse(method);
    nlohmann::json set{{"quant.activation.observer", quant::observer_info(choice.kind).name},
                       {"quant.ptq.calibration_batches", calibration_batches(config)}};
    if (choice.kind == quant::ObserverKind::percentile)
      set["quant.activation.percentile"] = choice.percentile;
    if (quant::observer_info(choice.kind).is_calibrator)
      set["quant.activation.symmetric"] = true, set["quant.activation.signed"] = true;
    for (const SweepMethod& variant : compare.ptq) {
      // "mse" as configured or with nearest rounding, "mse+adaround" with a variant.
      const bool plain = variant.name.empty() || variant.name == "nearest";
      SweepMethod run_method{plain ? method : method + "+" + variant.name, StageKind::ptq, set};
      run_method.set.update(variant.set);
      for (int64_t run = 0; run < compare.runs; ++run)
        plan.push_back(
            {run_method, compare.bits, compare.bits, static_cast<int64_t>(config.train.seed) + run});
    }
  }
  return plan;
}

std::vector<SweepRecord> run_calibrate_compare(const RunConfig& config, bool resume) {
  const std::string title = config.file + ": " + config.model.name;
  const PlanResult result = execute_plan(
      config, plan_calibrate_compare(config), resume, "compare",
      [&](const std::vector<SweepRecord>& so_far, double fp32) { return compare_svg(so_far, fp32, title); });
  print_compare_table(config, result.records, result.fp32_accuracy);
  std::printf("\n%s/compare.csv, compare.json, compare.svg\n", config.output_dir.c_str());
  return result.records;
}

}  // namespace qforge::train
