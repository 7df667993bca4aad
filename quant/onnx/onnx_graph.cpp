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
  std::string name = fresh(base);
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

onnx::NodeProto& GraphBuilder::node_with_outputs(const std::string& op_type,
                                                 const std::vector<std::string>& inputs,
                                                 const std::vector<std::string>& outputs,
                                                 const std::string& name) {
  onnx::NodeProto* n = graph_.add_node();
  n->set_op_type(op_type);
  n->set_name(fresh(name + "/" + op_type));
  for (const std::string& input : inputs) n->add_input(input);
  for (const std::string& output : outputs) n->add_output(output.empty() ? "" : fresh(output));
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

// The model shell: opset, producer, the input (N, ...) and the output.
onnx::ModelProto new_model(const Shape& input_shape) {
  onnx::ModelProto model;
  model.set_ir_version(7);
  model.set_producer_name("qforge");
  model.set_producer_version("0.1.0");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("qforge");
  onnx::ValueInfoProto* input = graph->add_input();
  input->set_name("input");
  onnx::TypeProto_Tensor* type = input->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx::TensorProto_DataType_FLOAT);
  type->mutable_shape()->add_dim()->set_dim_param("batch");
  for (int64_t e : input_shape) type->mutable_shape()->add_dim()->set_dim_value(e);
  return model;
}

void add_output(onnx::ModelProto& model, GraphBuilder& g, const std::string& value, int64_t classes) {
  g.node("Identity", {value}, "logits", "output");
  onnx::ValueInfoProto* output = model.mutable_graph()->add_output();
  output->set_name(g.last_output());
  onnx::TypeProto_Tensor* type = output->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx::TensorProto_DataType_FLOAT);
  type->mutable_shape()->add_dim()->set_dim_param("batch");
  type->mutable_shape()->add_dim()->set_dim_value(classes);
}

std::string serialize(const onnx::ModelProto& model) {
  std::string bytes;
  QF_CHECK(model.SerializeToString(&bytes), "export: cannot serialize the ONNX model");
  return bytes;
}

std::string sequence_input(GraphBuilder& g, const std::string& x, int64_t features, const std::string& name) {
  g.node("Reshape", {x, g.int64s(name + ".sequence_shape", {0, -1, features}, {3})}, name + ".rows", name);
  GraphBuilder::set_ints(g.node("Transpose", {g.last_output()}, name + ".time_major", name), "perm",
                         {1, 0, 2});
  return g.last_output();
}

std::string layer_sequence(GraphBuilder& g, const std::string& y, const std::string& name) {
  g.node("Squeeze", {y, g.int64s(name + ".direction_axis", {1}, {1})}, name + ".sequence", name);
  return g.last_output();
}

std::string last_hidden(GraphBuilder& g, const std::string& y_h, const std::string& name) {
  g.node("Squeeze", {y_h, g.int64s(name + ".direction_axis", {0}, {1})}, name + ".last_hidden", name);
  return g.last_output();
}

}  // namespace qforge::quant::onnx_io
