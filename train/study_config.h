// The studies' sections of a config (`qforge sweep`, `calibrate-compare`, `sensitivity`),
// parsed with the rest of the config (train/config.h) into these structs; the studies
// themselves are train/studies/.
//
// clang-format off
//   "sweep": {
//     "bits": [1, 2, 3, 4, 5, 6, 7, 8],  // the widths swept (default 1..8)
//     "apply": "both",                    // both | weights | activations (the other at "fixed_bits")
//     "fixed_bits": 8,
//     "seeds": 3,                          // runs per cell: train.seed, train.seed+1, ...
//     "methods": ["ptq", "qat", "lsq"]     // built-in names, or {"name", "kind": ptq|qat, "set": {...},
//                                          //   "bits": [1]} (only those of the sweep's widths)
//   },
//   "calibrate_compare": {"runs": 5, "images": 512, "bits": 8,
//                         "methods": ["minmax", "histogram", "max", "percentile:99.9", "percentile:99.99",
//                                     "percentile:99.999", "mse", "entropy"],
//                         "ptq": ["nearest", "adaround"]},  // optional: PTQ variants crossed with the
//                         // calibrators, built-in (nearest, equalize, bias_correction, adaround) or
//                         // {"name", "set": {...}}; their runs are named "mse+adaround"
//   "sensitivity": {"bits": 4, "target_accuracy": 0.90}
// clang-format on
// Built-in sweep methods: ptq (the config's observers, calibrated on quant.ptq.calibration_batches),
// qat (the config's QAT recipe), lsq (QAT with learnable scales, activations initialized by
// the histogram observer). A method's "set" holds config overrides ("quant.qat.epochs": 3); its
// "bits" restricts it to some widths (binary weights, "quant.weight.binary": true, exist at 1 bit).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qforge::train {

enum class StageKind { ptq, qat };

struct SweepMethod {
  std::string name;
  StageKind kind = StageKind::qat;
  nlohmann::json set = nlohmann::json::object();  // {"a.b.c": value}: config overrides for this method
  std::vector<int> bits;  // the sweep's widths this method runs at (empty: all; binary weights: [1])
};

struct SweepConfig {
  std::vector<int> bits{1, 2, 3, 4, 5, 6, 7, 8};
  enum class Apply { both, weights, activations } apply = Apply::both;
  int fixed_bits = 8;
  int64_t seeds = 3;
  std::vector<SweepMethod> methods;  // default: ptq, qat, lsq
};

struct CompareConfig {
  int64_t runs = 5, images = 512;
  int bits = 8;
  std::vector<std::string> methods{"minmax",           "histogram",         "max", "percentile:99.9",
                                   "percentile:99.99", "percentile:99.999", "mse", "entropy"};
  std::vector<SweepMethod> ptq{{"", StageKind::ptq}};  // each calibrator runs with each ("": as configured)
};

struct SensitivityConfig {
  int bits = 4;
  double target_accuracy = -1;  // -1: fp32 accuracy − 0.01
};

// An absent section gives the defaults; errors name "sweep.<key>" and so on.
SweepConfig parse_sweep_config(const nlohmann::json& section, const std::string& file);
CompareConfig parse_compare_config(const nlohmann::json& section, const std::string& file);
SensitivityConfig parse_sensitivity_config(const nlohmann::json& section, const std::string& file);

}  // namespace qforge::train
