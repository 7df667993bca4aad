// Building an ONNX graph with libonnx's protobuf classes: initializers from our tensors,
// nodes with their attributes, unique value names; the model's shell (opset, input, output);
// and the pieces both exporters use for an LSTM (ONNX's gate order and sequence layout).
// Used by the exporters (onnx_export.cpp, onnx_float_export.cpp); not a public header of
// qforge's API (it exposes protobuf types).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/tensor.h"
#include "quant/onnx/onnx_export.h"

namespace qforge::quant::onnx_io {

constexpr int kOpset = 13;

template <typename... Args>
[[noreturn]] void refuse(const Args&... args) {
  std::ostringstream message;
  (message << ... << args);
  throw ExportError(message.str());
}

inline std::vector<int64_t> pair_of(int64_t h, int64_t w) { return {h, w}; }

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto& graph) : graph_(graph) {}

  // A name not used yet, from `base` ("conv0.weight", "conv0.weight_1", ...).
  std::string fresh(const std::string& base);

  // Initializers (the raw little-endian bytes of the values), named fresh from `base`.
  std::string floats(const std::string& base, const std::vector<float>& values,
                     const std::vector<int64_t>& dims);
  std::string scalar(const std::string& base, float value) { return floats(base, {value}, {}); }
  std::string int8s(const std::string& base, const std::vector<int8_t>& values,
                    const std::vector<int64_t>& dims);
  std::string uint8s(const std::string& base, const std::vector<uint8_t>& values,
                     const std::vector<int64_t>& dims);
  std::string int32s(const std::string& base, const std::vector<int32_t>& values,
                     const std::vector<int64_t>& dims);
  std::string int64s(const std::string& base, const std::vector<int64_t>& values,
                     const std::vector<int64_t>& dims);

  // A node with one output, named fresh from `output`; returns the output's name.
  onnx::NodeProto& node(const std::string& op_type, const std::vector<std::string>& inputs,
                        const std::string& output, const std::string& name);
  const std::string& last_output() const { return last_output_; }
  // A node with several outputs, each named fresh from its base ("" for an unused optional one).
  onnx::NodeProto& node_with_outputs(const std::string& op_type, const std::vector<std::string>& inputs,
                                     const std::vector<std::string>& outputs, const std::string& name);

  static void set_ints(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& values);
  static void set_int(onnx::NodeProto& node, const std::string& name, int64_t value);
  static void set_float(onnx::NodeProto& node, const std::string& name, float value);

 private:
  std::string tensor(const std::string& base, int type, const void* bytes, std::size_t size,
                     const std::vector<int64_t>& dims);
  onnx::GraphProto& graph_;
  std::unordered_set<std::string> used_;
  std::string last_output_;
};

// The model shell: opset 13, producer, the input "input" (batch, input_shape...).
onnx::ModelProto new_model(const Shape& input_shape);
// The graph's output "logits" (batch, classes), an Identity of `value`.
void add_output(onnx::ModelProto& model, GraphBuilder& g, const std::string& value, int64_t classes);
std::string serialize(const onnx::ModelProto& model);

// Note [LSTM in ONNX]
// ONNX's LSTM (and ONNX Runtime's DynamicQuantizeLSTM) read a sequence as (T, N, features) and
// order the four gates i, o, f, c; qforge (as PyTorch) reads (N, T, features) and orders them
// i, f, g(=c), o. The exporters reshape the input image (N,1,T,F) to (N,T,F), transpose it to
// (T,N,F), reorder every gate-stacked weight, scale and bias (to_onnx_gates), feed each layer's
// Y (T,1,N,H) to the next as (T,N,H), and give the classifier the last layer's Y_h as (N,H).
template <typename T>
std::vector<T> to_onnx_gates(const T* rows, int64_t gates, int64_t row_length) {
  const int64_t hidden = gates / 4, order[4] = {0, 3, 1, 2};  // ONNX's i, o, f, c from qforge's i, f, g, o
  std::vector<T> out(static_cast<std::size_t>(gates * row_length));
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t r = 0; r < hidden * row_length; ++r)
      out[k * hidden * row_length + r] = rows[order[k] * hidden * row_length + r];
  return out;
}
// (N, ...) -> (T, N, features).
std::string sequence_input(GraphBuilder& g, const std::string& x, int64_t features, const std::string& name);
// An LSTM node's Y (T,1,N,H) -> (T,N,H), and Y_h (1,N,H) -> (N,H).
std::string layer_sequence(GraphBuilder& g, const std::string& y, const std::string& name);
std::string last_hidden(GraphBuilder& g, const std::string& y_h, const std::string& name);

}  // namespace qforge::quant::onnx_io
