// The integer model: what convert (quant/convert.h) builds from a QAT or PTQ model and
// what a .qfm file holds — a short list of integer ops, each reading earlier values and
// writing one new value (value 0 is the network input, op i writes value i + 1):
//   quantize      float images -> uint8 (NHWC for images)
//   conv2d        uint8 -> uint8 (or float), int8 weights packed once, int32 accumulation,
//                 zero-point correction from the weight sums, per-channel requantization
//   linear        the same for (N,K) inputs
//   relu, max_pool2d, avg_pool2d, adaptive_avg_pool2d, add (+ReLU), flatten
//   float_conv2d, float_linear   a layer the config keeps in float (between dequantize
//                 and quantize)
//   lstm          a static integer LSTM (QAT) or a dynamic one (quant.mode "dynamic")
//   dequantize    uint8 -> float (the logits)
// Every op runs on either backend (Note [Backends]): reference kernels for reading and
// testing, fast ones for deployment; forward() holds them to identical outputs in tests.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/serialize.h"
#include "core/tensor.h"
#include "quant/int8/requantize.h"

namespace qforge::quant::int8 {

// A value of the graph: uint8 activations with their quantization, or float.
//   uint8 images (N,H,W,C) — channels last; uint8 features (N,F); uint8 sequences (N,T,F)
//   float images (N,C,H,W); float features (N,F)
struct Value {
  Tensor data;
  ActivationQuant quant;  // for uint8 data
  bool is_quantized() const { return data.defined() && data.dtype() == DType::u8; }
};

// What a value is without its data, per sample: uint8 (with its quantization) or float,
// and its shape — uint8 images (H,W,C), float images (C,H,W), features (F), sequences (T,F).
// The graph check (IntegerModel::check) infers one per op from its inputs' types.
struct ValueType {
  bool is_quantized = false;
  ActivationQuant quant;  // uint8 values only
  Shape shape;
};
std::string describe(const ValueType& type);  // "uint8 (14,14,32) scale 0.02 zero point 3", "float (10)"
bool same_quantization(const ActivationQuant& a, const ActivationQuant& b);

class OpReader;  // quant/int8/op_fields.h

class IntegerOp {
 public:
  virtual ~IntegerOp() = default;
  virtual std::string kind() const = 0;
  virtual Value run(const std::vector<const Value*>& inputs, Backend backend) const = 0;
  // The type of the value run() would produce from inputs of these types, or an error
  // saying what the op expected ("expected uint8 (14,14,32), got uint8 (12,12,32)").
  virtual ValueType infer(const std::vector<const ValueType*>& inputs) const = 0;
  // Parameters for the file header and `qforge inspect` (tensors go to `blobs` under
  // `prefix`). The op's name and inputs are added by the model.
  virtual nlohmann::json save(TensorMap& blobs, const std::string& prefix) const = 0;
  // Bytes of weights the op carries (for the model-size report).
  virtual int64_t weight_bytes() const { return 0; }

  std::string name;         // the layer of the float model it comes from ("layers.0.residual.0")
  std::vector<int> inputs;  // value ids
};

class IntegerModel {
 public:
  // Appends an op reading `inputs`; returns the id of the value it writes.
  int add(std::unique_ptr<IntegerOp> op, std::vector<int> inputs, std::string name);
  // images: float (N,C,H,W) as the float model takes them; returns the float outputs.
  Tensor forward(const Tensor& images, Backend backend = Backend::fast) const;
  // Every value of a forward pass (inspection and tests); with `seconds`, each op's time.
  std::vector<Value> run_all(const Tensor& images, Backend backend = Backend::fast,
                             std::vector<double>* seconds = nullptr) const;

  const std::vector<std::unique_ptr<IntegerOp>>& ops() const { return ops_; }
  int64_t weight_bytes() const;

  // The graph check (Note [Model file]): from the input, each op's inputs must be what it
  // was built for — uint8 or float, shape, scale and zero point — and the last value
  // float. Errors name the op ("ops.3 (conv2d, layers.0): ..."). Run on every load and
  // after convert.
  void check() const;
  // The type of every value (value 0 the input, value i + 1 op i's output), as check infers them.
  std::vector<ValueType> value_types() const;

  // .qfm files (core/serialize.h's checksummed format; Note [Model file]).
  void save(const std::string& path, const nlohmann::json& source = {}) const;
  static IntegerModel load(const std::string& path);
  static IntegerModel from_file(const TensorFile& file, const std::string& path);
  // The kinds a file may name and their loaders (each beside its op's save).
  using Loader = std::unique_ptr<IntegerOp> (*)(OpReader& reader);
  static const std::vector<std::pair<std::string, Loader>>& op_kinds();
  nlohmann::json source;  // what it was converted from (model, config), kept in the file
  Shape input_shape;      // (C,H,W) or (T,F) per sample

 private:
  std::vector<std::unique_ptr<IntegerOp>> ops_;
};

}  // namespace qforge::quant::int8
