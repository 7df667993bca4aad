// `qforge calibrate-compare CONFIG`: NVIDIA pytorch-quantization's PTQ calibration study
// (the config's "calibrate_compare" section, train/study_config.h). Each method calibrates
// the activations (weights: the config's, per-channel MinMax by default) on `runs`
// different random subsets of `images` training images (train.seed, +1, ...) and is
// evaluated with fake quantization (and as integers where that runs); calibrators (max,
// percentile, mse, entropy) use NVIDIA's signed symmetric activations. Results: a table
// (mean, min, max), DIR/compare.{csv,json} and DIR/compare.svg, a box plot per method.
// The runs are the studies' runs (train/studies/runner.h: folders, logs, --resume).
#pragma once

#include <vector>

#include "train/config.h"
#include "train/studies/runner.h"

namespace qforge::train {

// Every method x calibration subset.
std::vector<PlannedRun> plan_calibrate_compare(const RunConfig& config);

std::vector<SweepRecord> run_calibrate_compare(const RunConfig& config, bool resume);

}  // namespace qforge::train
