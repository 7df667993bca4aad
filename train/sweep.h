// `qforge sweep CONFIG`: the bit-width study. One fp32 model (the config's
// quant.fp32_checkpoint, or trained once into DIR/fp32), then PTQ and QAT runs for every
// (width, method, seed), each a normal run folder under DIR/runs/ with its own log.txt;
// the fake-quant accuracy and, where the integer runtime runs that width, the integer
// model's accuracy beside it. Results: a table on stdout (mean ± std over seeds),
// DIR/sweep.csv, DIR/sweep.json (one record per run) and DIR/sweep.svg (accuracy vs bits,
// one line per method with the seeds' min..max as error bars, the fp32 accuracy dashed).
// A killed sweep continues with --resume: finished runs are read back, not rerun.
//
// clang-format off
//   "sweep": {
//     "bits": [1, 2, 3, 4, 5, 6, 7, 8],  // the widths swept (default 1..8)
//     "apply": "both",                    // both | weights | activations (the other at "fixed_bits")
//     "fixed_bits": 8,
//     "seeds": 3,                          // runs per cell: train.seed, train.seed+1, ...
//     "methods": ["ptq", "qat", "lsq"]     // built-in names, or {"name", "kind": ptq|qat, "set": {...}}
//   }
// clang-format on
// Built-in methods: ptq (the config's observers, calibrated on quant.ptq.calibration_batches),
// qat (the config's QAT recipe), lsq (QAT with learnable scales, activations initialized by
// the histogram observer). A method's "set" holds config overrides ("quant.qat.epochs": 3).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/config.h"

namespace qforge::train {

struct SweepMethod {
  std::string name;
  std::string kind;    // "ptq" or "qat"
  nlohmann::json set;  // {"a.b.c": value}: config overrides for this method
};

struct SweepConfig {
  std::vector<int> bits{1, 2, 3, 4, 5, 6, 7, 8};
  std::string apply = "both";  // both | weights | activations
  int fixed_bits = 8;
  int64_t seeds = 3;
  std::vector<SweepMethod> methods;
};

// An absent section gives the defaults (ptq, qat, lsq); errors name "sweep.<key>".
SweepConfig parse_sweep_config(const nlohmann::json& section, const std::string& file);

// One finished run of the sweep.
struct SweepRecord {
  std::string method;
  int weight_bits = 0, activation_bits = 0;
  int64_t seed = 0;
  double accuracy = 0;
  double int8_accuracy = -1;  // -1: the integer runtime does not run this width
  double seconds = 0;
  std::string error;  // a run that failed (a NaN loss at 1 bit, say): its message; accuracy unused
};
nlohmann::json to_json(const SweepRecord& record);

// The whole study into config.output_dir; returns the records in run order.
std::vector<SweepRecord> run_sweep(const RunConfig& config, bool resume);

// `qforge calibrate-compare CONFIG`: NVIDIA pytorch-quantization's PTQ calibration study.
// Each method calibrates the activations (weights: the config's, per-channel MinMax by
// default) on `runs` different random subsets of `images` training images (train.seed,
// +1, ...) and is evaluated with fake quantization (and as integers where that runs);
// calibrators (max, percentile, mse, entropy) use NVIDIA's signed symmetric activations.
// Results: a table (mean, min, max), DIR/compare.{csv,json} and DIR/compare.svg, a box
// plot per method. The runs are sweep runs (the same folders, logs and --resume).
//
// clang-format off
//   "calibrate_compare": {"runs": 5, "images": 512, "bits": 8,
//                         "methods": ["minmax", "histogram", "max", "percentile:99.9", "percentile:99.99",
//                                     "percentile:99.999", "mse", "entropy"]}
// clang-format on
struct CompareConfig {
  int64_t runs = 5, images = 512;
  int bits = 8;
  std::vector<std::string> methods{"minmax",           "histogram",         "max", "percentile:99.9",
                                   "percentile:99.99", "percentile:99.999", "mse", "entropy"};
};
CompareConfig parse_compare_config(const nlohmann::json& section, const std::string& file);
std::vector<SweepRecord> run_calibrate_compare(const RunConfig& config, bool resume);

// `qforge sensitivity CONFIG [--target-accuracy A]`: per quantizable layer (Conv2d,
// Linear, a residual block's add, the network input) at `bits` (default 4), PTQ accuracy with only that layer
// quantized (every other layer and the input at 16 bits, indistinguishable from float here) and with all but
// that layer quantized (it at 16 bits); the SQNR 10·log10(Σx²/Σ(x−x̂)²) of its weights (per-channel symmetric
// at `bits`, before BN folding), of its output activations in the all-quantized model against the fused
// float model (quant/numeric_suite.h: PyTorch's compare_weights / compare_model_outputs), and of the
// network's logits with only it quantized, on the first 512 test images. A ranked table (by the accuracy lost
// with only that layer quantized), DIR/sensitivity.json and a bar chart. Then a mixed-precision suggestion
// for the target accuracy (default: fp32 − 1 point): the layers whose "all but" runs gain most are kept at 8
// bits, one more at a time, until a PTQ run of the candidate reaches the target; it is written as
// DIR/suggested.json (a config `qforge qat` runs) and QAT is run once on it to report its accuracy and size.
//
// clang-format off
//   "sensitivity": {"bits": 4, "target_accuracy": 0.90}
// clang-format on
struct SensitivityConfig {
  int bits = 4;
  double target_accuracy = -1;  // -1: fp32 accuracy − 0.01
};
SensitivityConfig parse_sensitivity_config(const nlohmann::json& section, const std::string& file);
struct LayerSensitivity {
  std::string layer, type;
  double only_accuracy = 0, all_but_accuracy = 0;
  double weight_sqnr = 0;  // NaN: no weights (the input, a block's add)
  double output_sqnr = 0;  // the layer's output, all-quantized vs fused float model (NaN: no such run)
  double logits_sqnr = 0;  // the network's logits, only this layer quantized vs fp32
};
std::vector<LayerSensitivity> run_sensitivity(const RunConfig& config, bool resume,
                                              double target_accuracy = -1);

}  // namespace qforge::train
