// Empirical bias correction (Nagel et al., "Data-Free Quantization Through Weight
// Equalization and Bias Correction", 2019, §4.2; AIMET's empirical bias correction).
//
// Note [Bias correction]
// Rounding a layer's weights shifts the mean of its output: for an input x,
// Ŵ·x = W·x − (W − Ŵ)·x, and E[(W − Ŵ)·x] per output channel is in general not zero — a
// systematic error that every later layer inherits (it is largest at low widths and for
// per-tensor weights, where small channels round coarsely). Empirical correction measures it
// and moves it into the bias:
//     b_c  +=  E[(W − Ŵ)·x]_c        (the mean over images and positions of channel c)
// layer by layer in network order, x being the layer's input in the quantized model whose
// earlier layers are already corrected (so each correction also absorbs what the prefix
// left). W is the weight the integer model holds before rounding (batch norm folded), Ŵ its
// fake-quantized value. With a batch norm the shift goes into β (the folded bias is
// β + (b − μ)·γ/σ); a layer without bias or batch norm, or kept in float, is skipped.
// The corrected bias is an ordinary float bias: the simulation and convert round it to the
// int32 grid alike (Note [Bias quantization]), so the integer model stays the simulation.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "nn/module.h"

namespace qforge::quant {

struct CorrectedLayer {
  std::string name;
  float largest = 0;  // max |correction| over the layer's channels
};
struct BiasCorrectionReport {
  std::vector<CorrectedLayer> layers;
  std::vector<std::string> skipped;  // quantized layers with no bias to correct
};

// Corrects every conv/linear with quantized weights of a prepared, calibrated model in place.
// run_batches forwards the calibration images through `model` (in eval mode, fake quant on,
// observers off); it is called once per layer.
BiasCorrectionReport correct_bias(nn::Module& model, const std::function<void()>& run_batches);

}  // namespace qforge::quant
