// ONNX export (opset 13), built on Debian's libonnx (the generated protobuf classes and
// onnx::checker) — the way a model leaves qforge for ONNX Runtime, TensorRT or OpenVINO.
//   export_integer_onnx  an integer model (quant/int8/integer_model.h) as QDQ ONNX: uint8
//                        per-tensor activations as QuantizeLinear/DequantizeLinear pairs at
//                        exactly the places the integer model quantizes, the integer weights
//                        behind a per-channel DequantizeLinear (axis 0; uint8 with zero point
//                        128 by default, Note [Weight codes in ONNX]), int32 biases with
//                        scale s_x·s_w[c], then Conv / Gemm / Relu / MaxPool / AveragePool /
//                        GlobalAveragePool / Add / Flatten — ONNX Runtime's QDQ transformer
//                        fuses them into integer kernels (QLinearConv, ...). The same scales,
//                        zero points and integer weights as the .qfm: nothing is recomputed.
//                        Ranges narrower than 8 bits clamp with a Clip before their
//                        QuantizeLinear, so 4- and 2-bit models compute what qforge computes.
//                        Layers kept in float stay float between a DequantizeLinear and a
//                        QuantizeLinear.
//   export_float_onnx    a float model (nn/) as plain ONNX: Conv, BatchNormalization, Relu,
//                        pools, Flatten, Gemm, Add.
// Anything the exporter cannot express (an LSTM, a pool window ONNX has no attribute for)
// is one ExportError naming the layer. write_onnx checks the model with onnx::checker and
// strict shape inference (the full check) before it writes it, atomically: a file that is
// written passes the checker.
#pragma once

#include <string>

#include "core/error.h"
#include "nn/module.h"
#include "quant/int8/integer_model.h"

namespace onnx {
class ModelProto;
}

namespace qforge::quant::onnx_io {

class ExportError : public Error {
 public:
  using Error::Error;
};

// How the integer weights are stored in the ONNX file (Note [Weight codes in ONNX]): the same
// values either way, q as int8 with zero point 0, or q + 128 as uint8 with zero point 128.
enum class WeightCodes { uint8, int8 };

// "uint8" or "int8" (qforge export --onnx-weights); anything else is an Error naming `what`.
WeightCodes parse_weight_codes(const std::string& name, const std::string& what);

struct IntegerExportOptions {
  WeightCodes weights = WeightCodes::uint8;
};

// A serialized ONNX model (the bytes of a ModelProto), checked.
std::string export_integer_onnx(const int8::IntegerModel& model, const IntegerExportOptions& options = {});
std::string export_float_onnx(nn::Module& model, const Shape& input_shape);

// Runs the full check (onnx::checker::check_model, then strict shape inference with type
// checks) on serialized bytes; an error names `what` and the checker's reason.
void check_onnx(const std::string& bytes, const std::string& what);

// Checks `bytes` and writes them to `path` atomically.
void write_onnx(const std::string& bytes, const std::string& path);

// "Conv 3, QuantizeLinear 8, ..." — the op types of an ONNX file's graph and how often
// each occurs (qforge inspect model.onnx; the ONNX Runtime test reads it off the optimized
// graph to see that integer kernels ran).
std::string describe_onnx(const std::string& bytes, const std::string& path);

}  // namespace qforge::quant::onnx_io
