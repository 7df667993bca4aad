// Cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight
// Equalization and Bias Correction", 2019, §4.1; AIMET's cross_layer_equalization).
//
// Note [Cross-layer equalization]
// Two layers joined by a positively homogeneous path — f(s·x) = s·f(x) for s > 0 per
// channel: ReLU, max and average pooling, flatten, dropout in eval, identity — compute the
// same function when output channel i of the first is divided by s_i and input channel i of
// the second is multiplied by it:
//     W2 · f(W1·x + b1)  =  (W2·S) · f(S⁻¹·(W1·x + b1)),   S = diag(s).
// Per-channel weight ranges r1_i = max |W1[i, ...]| (the first layer's output channel, after
// its batch norm is folded: W1·γ/σ) and r2_i = max |W2[:, i, ...]| (the second's input
// channel i, its own batch norm folded too) become equal, sqrt(r1_i·r2_i), with
//     s_i = sqrt(r1_i / r2_i),
// which is what a per-tensor (or per-channel) weight quantizer wants: no channel of W1 sits
// on a few levels of a range set by another. Chains of three or more layers are swept pair by
// pair until no scale moves by more than 1e-4 relative (at most 100 sweeps). A channel with
// a zero range on either side keeps s = 1.
// Where the first layer has a batch norm, its γ and β carry the 1/s_i (the BN's output is
// what scales) and the conv weight stays; without one, the conv/linear row and bias do. A
// flatten between a conv and a linear maps channel i to features [i·HW, (i+1)·HW). Grouped
// and depthwise convolutions pair too (input channel i meets the output channels of its
// group). Not paired: anything across a residual add (a block's input also feeds its
// shortcut) or an LSTM, and layers whose float weights are not what the integer model
// quantizes as such (an already prepared model is refused).
#pragma once

#include <string>
#include <vector>

#include "nn/module.h"

namespace qforge::quant {

struct EqualizedPair {
  std::string first, second;  // dotted module names
};
struct EqualizeReport {
  std::vector<EqualizedPair> pairs;
  int sweeps = 0;             // over all chains, until the scales stopped moving
  double largest_change = 0;  // max |s − 1| of the last sweep
};

// High-bias absorption (DFQ §4.1.1), usually after equalization, which can raise a
// channel's bias with its scale. Where the first layer of a pair has a batch norm and a
// ReLU lies between them, its pre-activation h_i is at least c_i = max(0, β_i − 3|γ_i|) for
// all but a 3σ tail (γ, β: the batch norm's affine parameters, h ~ N(β, γ²) as the batch
// norm makes it). Then ReLU(h_i − c_i) = ReLU(h_i) − c_i, and moving c_i out of β_i into the
// second layer (its bias gains Σ W2[o, i, ...]·c_i; with a batch norm and no bias, the
// running mean loses it) computes the same function with a ReLU output range lower by c_i:
// a tighter activation grid. Not exact where h_i < c_i (the tail), and, for a padded conv,
// at the border (padding stays 0 instead of −c_i) — the price DFQ and AIMET accept.
struct AbsorbedPair {
  std::string first, second;
  int64_t channels = 0;  // channels that gave up some bias
  float largest = 0;     // the largest c_i
};
struct HighBiasReport {
  std::vector<AbsorbedPair> pairs;
};
HighBiasReport absorb_high_bias(nn::Module& model);

// Equalizes every pair of a float model in place (Note [Cross-layer equalization]); the
// model must not be prepared for quantization yet.
EqualizeReport equalize(nn::Module& model);

// The per-channel weight ranges that equalization balances, for the pair's shared channels:
// r1 (the first layer's output channels, BN folded) and r2 (the second's input channels).
struct PairRanges {
  std::vector<float> first, second;
};
std::vector<PairRanges> pair_ranges(nn::Module& model);

}  // namespace qforge::quant
