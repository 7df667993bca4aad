// `qforge sweep CONFIG`: the bit-width study (the config's "sweep" section,
// train/study_config.h). For every (width, method, seed) a PTQ or QAT run over one fp32
// model (train/studies/runner.h); the fake-quant accuracy and, where the integer runtime
// runs that width, the integer model's accuracy beside it. Results: a table on stdout
// (mean ± std over seeds), DIR/sweep.csv, DIR/sweep.json (one record per run) and
// DIR/sweep.svg (accuracy vs bits, one line per method with the seeds' min..max as error
// bars, the fp32 accuracy dashed). A killed sweep continues with --resume.
#pragma once

#include <vector>

#include "train/config.h"
#include "train/studies/runner.h"

namespace qforge::train {

// Every (width, method, seed), in that order.
std::vector<PlannedRun> plan_sweep(const SweepConfig& sweep, int64_t first_seed);

// The whole study into config.output_dir; returns the records in run order.
std::vector<SweepRecord> run_sweep(const RunConfig& config, bool resume);

}  // namespace qforge::train
