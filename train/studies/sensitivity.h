// `qforge sensitivity CONFIG [--target-accuracy A]` (the config's "sensitivity" section,
// train/study_config.h): per quantizable layer (Conv2d, Linear, a residual block's add,
// the network input) at `bits` (default 4), PTQ accuracy with only that layer quantized
// (every other layer and the input at 16 bits, indistinguishable from float here) and with
// all but that layer quantized (it at 16 bits); the SQNR of its weights (per-channel
// symmetric at `bits`, before BN folding), of its output activations in the all-quantized
// model against the fused float model (quant/numeric_suite.h: PyTorch's compare_weights /
// compare_model_outputs), and of the network's logits with only it quantized, on the first
// 512 test images. A ranked table (by the accuracy lost with only that layer quantized),
// DIR/sensitivity.json and a bar chart. Then a mixed-precision suggestion for the target
// accuracy (default: fp32 − 1 point): the layers whose "all but" runs gain most are kept at
// 8 bits, one more at a time, until a PTQ run of the candidate reaches the target; it is
// written as DIR/suggested.json (a config `qforge qat` runs) and QAT is run once on it to
// report its accuracy and size.
#pragma once

#include <string>
#include <vector>

#include "train/config.h"

namespace qforge::train {

struct LayerSensitivity {
  std::string layer, type;
  double only_accuracy = 0, all_but_accuracy = 0;
  double weight_sqnr = 0;  // NaN: no weights (the input, a block's add)
  double output_sqnr = 0;  // the layer's output, all-quantized vs fused float model (NaN: no such run)
  double logits_sqnr = 0;  // the network's logits, only this layer quantized vs fp32
};

// The table, most sensitive first.
std::vector<LayerSensitivity> run_sensitivity(const RunConfig& config, bool resume,
                                              double target_accuracy = -1);

}  // namespace qforge::train
