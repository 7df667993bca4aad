// convert: a QAT or PTQ model (quant/prepare.h) -> the integer model
// (quant/int8/integer_model.h), PyTorch's torch.ao.quantization.convert.
// The integer model uses exactly the scales and zero points the fake-quant model used —
// nothing is recomputed (PyTorch 1.13 re-observes weights at convert and so deploys a
// different model from the one it trained, pytorch/pytorch #88800): weights are quantized
// with their quantizer's stored scales after the same BN folding the simulation ran, so
// the deployed integers are the ones QAT saw. Activations of any 2..8-bit range are
// stored in uint8 (signed ranges shifted by 2^(b−1), which represents the same values);
// weights must be symmetric (zero point 0) with 2..8 bits. Anything else — 1 bit, more
// than 8, affine weights, an uncalibrated quantizer, a module the runtime has no op for —
// is an error naming the layer.
#pragma once

#include "quant/int8/integer_model.h"
#include "quant/int8/integer_ops.h"
#include "quant/qat_modules.h"

namespace qforge::quant {

// What the integer runtime cannot run (1 bit, affine weights, a module it has no op for, a
// quantizer that never saw data): the message names the layer. A quantization stage reports
// it and keeps its fake-quant results; any other error from convert is a failure.
class ConvertError : public Error {
 public:
  using Error::Error;
};

// How convert deploys one conv or linear layer, or an LSTM's gate product (round_bias false:
// its bias stays float) (the simulation's eval mode runs it so: Note
// [The simulation runs the deployed arithmetic], qat_modules.cpp): the int8 weight codes and
// scales, the bias on the accumulator's grid, and the input and output quantization. Throws
// ConvertError, naming `where`, for what the runtime cannot run.
int8::LayerQuantization deployed_layer(const FakeQuantize& weight_quant, const Tensor& weight,
                                       const Tensor& bias, const FakeQuantize& input_quant,
                                       FakeQuantize* output_quant, bool has_relu, const std::string& where,
                                       bool round_bias = true);

// input_shape: one sample's shape as the float model takes it, e.g. (1,28,28).
int8::IntegerModel convert(QatModel& model, const Shape& input_shape);

// Dynamic quantization of a float model (PyTorch's quantize_dynamic on Linear and LSTM):
// int8 weights observed now with `weight`'s scheme (MinMax), activations quantized per call.
int8::IntegerModel convert_dynamic(nn::Module& model, const QuantizerSpec& weight, const Shape& input_shape);

}  // namespace qforge::quant
