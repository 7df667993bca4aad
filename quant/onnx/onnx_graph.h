// Building an ONNX graph with libonnx's protobuf classes: initializers from our tensors,
// nodes with their attributes, unique value names. Used by the exporters (onnx_export.cpp);
// not a public header of qforge's API (it exposes protobuf types).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

namespace qforge::quant::onnx_io {

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

}  // namespace qforge::quant::onnx_io
