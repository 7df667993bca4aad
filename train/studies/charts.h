// The studies' pictures (train/studies/), as standalone SVG documents written as text: a
// few lines, rectangles and labels, no plotting library. Each renders in a browser as it
// is (docs/sweep_digits.svg, docs/compare_lenet.svg, docs/sensitivity_resnet8.svg).
#pragma once

#include <string>
#include <vector>

#include "train/studies/runner.h"
#include "train/studies/sensitivity.h"

namespace qforge::train {

// `qforge sweep`: accuracy (%) vs bits, one line per method through the means, error bars
// over the seeds' min..max, fp32 as a dashed reference line, a legend.
std::string sweep_svg(const std::vector<SweepRecord>& records, double fp32_accuracy,
                      const std::string& title);

// `qforge calibrate-compare`: a box plot per method — whiskers min..max, the box the
// quartiles, the median line, the mean dot; the y axis spans the results.
std::string compare_svg(const std::vector<SweepRecord>& records, double fp32_accuracy,
                        const std::string& title);

// `qforge sensitivity`: the accuracy lost with only each layer quantized at `bits`, as
// horizontal bars in the order given (most sensitive first).
std::string sensitivity_svg(const std::vector<LayerSensitivity>& layers, double fp32_accuracy, int bits,
                            const std::string& title);

}  // namespace qforge::train
