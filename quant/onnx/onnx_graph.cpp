#include "quant/onnx/onnx_graph.h"

namespace qforge::quant::onnx_io {

std::string GraphBuilder::fresh(const std::string& base) {
  std::string name = base;
  for (int k = 1; used_.count(name); ++k) name = base + "_" + std::to_string(k);
  used_.insert(name);
  return name;
}

std::string GraphBuilder::tensor(const std::string& base, int type, const void* bytes, std::size_t size,
                                 const std::vector<int64_t>& dims) {
  onnx::TensorProto* t = graph_.add_initializer();
  const std::string name = fresh(base);
  t->set_name(name);
  t->set_data_type(type);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(static_cast<const char*>(bytes), size));  // little-endian, as x86 stores them
  return name;
}

std::string GraphBuilder::floats(const std::string& base, const std::vector<float>& v,
                                 const std::vector<int64_t>& dims) {
  return tensor(base, onnx::TensorProto_DataType_FLOAT, v.data(), v.size() * sizeof(float), dims);
}
std::string GraphBuilder::int8s(const std::string& base, const std::vector<int8_t>& v,
                                const std::vector<int64_t>& dims) {
  return tensor(base, onnx::TensorProto_DataType_INT8, v.data(), v.size(), dims);
}
std::string GraphBuilder::uint8s(const std::string& base, const std::vector<uint8_t>& v,
                                 const std::vector<int64_t>& dims) {
  return tensor(base, onnx::TensorProto_DataType_UINT8, v.data(), v.size(), dims);
}
std::string GraphBuilder::int32s(const std::string& base, const std::vector<int32_t>& v,
                                 const std::vector<int64_t>& dims) {
  return tensor(base, onnx::TensorProto_DataType_INT32, v.data(), v.size() * sizeof(int32_t), dims);
}
std::string GraphBuilder::int64s(const std::string& base, const std::vector<int64_t>& v,
                                 const std::vector<int64_t>& dims) {
  return tensor(base, onnx::TensorProto_DataType_INT64, v.data(), v.size() * sizeof(int64_t), dims);
}

onnx::NodeProto& GraphBuilder::node(const std::string& op_type, const std::vector<std::string>& inputs,
                                    const std::string& output, const std::string& name) {
  onnx::NodeProto* n = graph_.add_node();
  n->set_op_type(op_type);
  n->set_name(fresh(name + "/" + op_type));
  for (const std::string& input : inputs) n->add_input(input);
  last_output_ = fresh(output);
  n->add_output(last_output_);
  return *n;
}

void GraphBuilder::set_ints(onnx::NodeProto& node, const std::string& name,
                            const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INTS);
  for (int64_t v : values) a->add_ints(v);
}

void GraphBuilder::set_int(onnx::NodeProto& node, const std::string& name, int64_t value) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_INT);
  a->set_i(value);
}

void GraphBuilder::set_float(onnx::NodeProto& node, const std::string& name, float value) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
  a->set_f(value);
}

}  // namespace qforge::quant::onnx_io
