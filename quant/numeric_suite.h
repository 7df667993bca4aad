// Numeric Suite: where a quantized model departs from its float model (PyTorch's
// torch.ao.ns._numeric_suite). The measure is the signal-to-quantization-noise ratio
//   SQNR(x, x̂) = 10·log10(Σx² / Σ(x − x̂)²)  dB,
// about 6 dB per bit for a well-used uniform grid (8 bits ≈ 40-48 dB, 4 bits ≈ 20 dB).
//   weight_sqnr_db         a weight against its per-channel fake quantization
//   compare_model_outputs  each named layer's output in the float model against the same
//                          layer's output in the quantized model, on the same input (a
//                          logger wraps each layer for one forward pass, as PyTorch's
//                          OutputLogger does, and is removed again).
// The float model to compare against is the fused one: a prepared model with its fake
// quantization switched off (set_fake_quant(false)) computes conv+BN+ReLU in float, so
// "the output of layer L" means the same thing on both sides.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "nn/module.h"

namespace qforge::quant {

// +inf when x̂ == x; requires equal shapes.
double sqnr_db(const Tensor& reference, const Tensor& approx);

// The SQNR of a weight (O, ...) against itself fake-quantized per output channel,
// symmetric signed at `bits` with MinMax ranges (PyTorch's compare_weights on a
// per-channel qconfig): how much a layer's weights alone lose at that width.
double weight_sqnr_db(const Tensor& weight, int bits);

// {layer name: SQNR of its output}, layers named as in `named_modules()` of both models
// (each must exist in both). Runs one forward pass of each model on `input` in eval mode
// without gradients; both models are left as they were.
std::map<std::string, double> compare_model_outputs(nn::Module& float_model, nn::Module& quantized_model,
                                                    const std::vector<std::string>& layers,
                                                    const Tensor& input);

}  // namespace qforge::quant
