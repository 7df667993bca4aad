#include "train/studies/sweep.h"

#include <algorithm>
#include <cstdio>

#include "train/studies/charts.h"

namespace qforge::train {

namespace {

// The fake-quant (or integer) accuracy table: a row per width, a column per method.
void print_table(const std::vector<SweepRecord>& records, const std::vector<SweepMethod>& methods, bool int8,
                 double fp32_accuracy) {
  std::printf("\n%s test accuracy (%%), mean ± std over seeds; fp32 %.2f%%\n",
              int8 ? "integer model" : "fake-quant", 100 * fp32_accuracy);
  std::printf("%-8s", "bits");
  for (const SweepMethod& m : methods) std::printf(" %16s", m.name.c_str());
  std::printf("\n");
  std::vector<std::string> labels;
  for (const SweepRecord& r : records)
    if (std::find(labels.begin(), labels.end(), bits_label(r)) == labels.end())
      labels.push_back(bits_label(r));
  for (const std::string& label : labels) {
    std::printf("%-8s", label.c_str());
    for (const SweepMethod& m : methods) {
      std::vector<double> values;
      int failed = 0;
      for (const SweepRecord& r : records) {
        if (r.method != m.name || bits_label(r) != label) continue;
        failed += !r.error.empty();
        if (r.error.empty() && (!int8 || r.int8_accuracy >= 0))
          values.push_back(100 * (int8 ? r.int8_accuracy : r.accuracy));
      }
      const Stats s = stats(values);
      char cell[32];
      if (failed > 0)  // a failed seed makes the cell's mean meaningless: say so
        std::snprintf(cell, sizeof cell, "%d failed", failed);
      else if (s.count == 0)
        std::snprintf(cell, sizeof cell, "-");
      else
        std::snprintf(cell, sizeof cell, "%.2f ± %.2f", s.mean, s.std);
      std::printf(" %16s", cell);
    }
    std::printf("\n");
  }
}

}  // namespace

std::vector<PlannedRun> plan_sweep(const SweepConfig& sweep, int64_t first_seed) {
  std::vector<PlannedRun> plan;
  for (int bits : sweep.bits)
    for (const SweepMethod& method : sweep.methods) {
      if (!method.bits.empty() &&
          std::find(method.bits.begin(), method.bits.end(), bits) == method.bits.end())
        continue;  // the method runs at other widths only (binary weights: 1 bit)
      for (int64_t s = 0; s < sweep.seeds; ++s)
        plan.push_back({method, sweep.apply == SweepConfig::Apply::activations ? sweep.fixed_bits : bits,
                        sweep.apply == SweepConfig::Apply::weights ? sweep.fixed_bits : bits,
                        first_seed + s});
    }
  return plan;
}

std::vector<SweepRecord> run_sweep(const RunConfig& config, bool resume) {
  const std::string title = config.file + ": " + config.model.name;
  const PlanResult result = execute_plan(
      config, plan_sweep(config.sweep, static_cast<int64_t>(config.train.seed)), resume, "sweep",
      [&](const std::vector<SweepRecord>& so_far, double fp32) { return sweep_svg(so_far, fp32, title); });
  print_table(result.records, config.sweep.methods, false, result.fp32_accuracy);
  print_table(result.records, config.sweep.methods, true, result.fp32_accuracy);
  std::printf("\n%s/sweep.csv, sweep.json, sweep.svg; each run's folder and log under %s/runs/\n",
              config.output_dir.c_str(), config.output_dir.c_str());
  return result.records;
}

}  // namespace qforge::train
