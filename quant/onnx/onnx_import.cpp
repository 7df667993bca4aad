// The importer reads the graph once to check it (Importer::index: inputs defined before use,
// sizes against shapes), then walks it from the input: a value with one consumer continues
// the current layer list, a value with two starts a residual block whose branches walk until
// they meet at an Add. Each node becomes one layer of the list (or none: Identity, Dropout),
// with its weights in the state dict under the name the built model gives them ("3.weight",
// "5.residual.0.weight"). Shapes are followed along the walk, per sample, as qforge's
// layers compute them, so a layer's sizes come from its input and not from what the file
// claims.
#include "quant/onnx/onnx_import.h"

#include <onnx/onnx_pb.h>

#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace qforge::quant::onnx_io {

namespace {

constexpr int64_t kMaxElements = int64_t{1} << 26;  // per constant: 256 MB of floats
constexpr int64_t kMaxExtent = 4096;                // channels, image side
constexpr int kMaxNodes = 100000;

const char* const kSupported =
    "Conv, BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool, Flatten, Reshape (to (N, "
    "features)), Gemm, MatMul (+ Add of a bias), Add (residual, + Relu), Identity, Dropout";

template <typename... Args>
std::string text(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// A layer list being built (the model's, or a residual block's branch): the layers' JSON and
// their tensors, named by position in this list ("0.weight").
struct Chain {
  nlohmann::json layers = nlohmann::json::array();
  TensorMap tensors;
  void add(nlohmann::json layer, const std::vector<std::pair<std::string, Tensor>>& layer_tensors) {
    for (const auto& [name, tensor] : layer_tensors)
      tensors[std::to_string(layers.size()) + "." + name] = tensor;
    layers.push_back(std::move(layer));
  }
  void add_under(const std::string& prefix, const Chain& inner) {
    for (const auto& [name, tensor] : inner.tensors) tensors[prefix + name] = tensor;
  }
};

class Importer {
 public:
  Importer(const onnx::ModelProto& model, std::string path)
      : model_(model), graph_(model.graph()), path_(std::move(path)) {}

  ImportedModel run() {
    ImportedModel out;
    out.opset = check_model();
    out.producer =
        model_.producer_name() + (model_.producer_version().empty() ? "" : " " + model_.producer_version());
    index();
    out.input_shape = shape_;
    Chain chain;
    const std::string end = walk(input_, chain);
    if (end != output_) {
      const onnx::NodeProto& join = *consumers_.at(end).at(0);
      fail_node(join,
                "joins values that do not fork from one value (qforge imports residual blocks: a value "
                "feeding two branches that meet at this Add)");
    }
    for (const onnx::NodeProto& node : graph_.node())
      if (!visited_.count(&node)) fail_node(node, "is not on the path from the input to the output");
    if (shape_.size() != 1)
      fail("the output \"", output_, "\" is ", shape_to_string(shape_),
           " per image; expected (classes): end with a "
           "Flatten and a Gemm");
    out.layers = chain.layers;
    out.state = chain.tensors;
    out.classes = shape_[0];
    out.nodes = graph_.node_size();
    return out;
  }

 private:
  // ---- errors -----------------------------------------------------------------------------
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    throw Error(text(path_, ": ", args...));
  }
  template <typename... Args>
  [[noreturn]] void fail_node(const onnx::NodeProto& node, const Args&... args) const {
    throw Error(text(path_, ": node \"", node.name(), "\" (", node.op_type(), "): ", args...));
  }

  // ---- the model, its input and output -------------------------------------------------------
  int64_t check_model() {
    int64_t opset = 0;
    for (const onnx::OperatorSetIdProto& o : model_.opset_import())
      if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
    if (opset < 11 || opset > 17)
      fail("opset ", opset, " of the default domain; qforge imports opsets 11 to 17");
    if (graph_.node_size() > kMaxNodes) fail(graph_.node_size(), " nodes; at most ", kMaxNodes);
    return opset;
  }

  void read_input() {
    for (const onnx::TensorProto& t : graph_.initializer()) {
      if (!constants_.emplace(t.name(), &t).second) fail("initializer \"", t.name(), "\" is defined twice");
    }
    const onnx::ValueInfoProto* input = nullptr;
    for (const onnx::ValueInfoProto& v : graph_.input()) {
      if (constants_.count(v.name())) continue;  // an initializer listed as an input (IR < 4)
      if (input)
        fail("two inputs (\"", input->name(), "\", \"", v.name(),
             "\"); qforge imports models of one image input");
      input = &v;
    }
    if (!input) fail("the graph has no input");
    input_ = input->name();
    if (!input->type().has_tensor_type() ||
        input->type().tensor_type().elem_type() != onnx::TensorProto_DataType_FLOAT)
      fail("input \"", input_, "\": expected a float32 tensor");
    const onnx::TensorShapeProto& dims = input->type().tensor_type().shape();
    if (dims.dim_size() != 4)
      fail("input \"", input_, "\" has ", dims.dim_size(), " dimensions; expected (N,C,H,W)");
    for (int i = 1; i < 4; ++i) {
      const onnx::TensorShapeProto_Dimension& d = dims.dim(i);
      if (!d.has_dim_value())
        fail("input \"", input_, "\": dimension ", i, " is dynamic (\"", d.dim_param(),
             "\"); qforge imports models whose channels, height and width are fixed (only the batch may "
             "vary)");
      if (d.dim_value() < 1 || d.dim_value() > kMaxExtent)
        fail("input \"", input_, "\": dimension ", i, " is ", d.dim_value(), "; expected 1 to ", kMaxExtent);
      shape_.push_back(d.dim_value());
    }
    if (graph_.output_size() != 1)
      fail(graph_.output_size(), " outputs; qforge imports models of one output");
    output_ = graph_.output(0).name();
  }

  // Every node's inputs must exist before it (no dangling value, no cycle), every value is
  // written once, and each value's consumers are known before the walk.
  void index() {
    read_input();
    std::set<std::string> defined{input_};
    for (const auto& [name, tensor] : constants_) defined.insert(name);
    for (const onnx::NodeProto& node : graph_.node()) {
      for (const std::string& in : node.input())
        if (!in.empty() && !defined.count(in))
          fail_node(node, "reads \"", in, "\", which no earlier node, initializer or input defines");
      for (const std::string& out : node.output())
        if (!out.empty() && !defined.insert(out).second)
          fail_node(node, "writes \"", out, "\" a second time");
      if (node.op_type() == "Constant" && node.domain().empty()) {
        read_constant_node(node);
        continue;
      }
      // An Identity of a constant is that constant (PyTorch shares equal initializers so).
      if (node.op_type() == "Identity" && node.input_size() == 1 && node.output_size() == 1 &&
          constants_.count(node.input(0))) {
        visited_.insert(&node);
        constants_[node.output(0)] = constants_.at(node.input(0));
        continue;
      }
      for (const std::string& in : node.input())
        if (!in.empty() && !constants_.count(in)) consumers_[in].push_back(&node);
    }
    if (!defined.count(output_)) fail("the output \"", output_, "\" is never written");
  }

  void read_constant_node(const onnx::NodeProto& node) {
    visited_.insert(&node);
    if (node.output_size() != 1 || node.attribute_size() != 1 || node.attribute(0).name() != "value" ||
        !node.attribute(0).has_t())
      fail_node(node, "expected one output and one tensor attribute \"value\"");
    constants_[node.output(0)] = &node.attribute(0).t();
  }

  // ---- constants: initializers and Constant nodes, checked against their shapes ----------------
  const onnx::TensorProto& constant_proto(const onnx::NodeProto& node, int k, const char* what) const {
    if (k >= node.input_size() || node.input(k).empty()) fail_node(node, "has no ", what, " (input ", k, ")");
    const auto it = constants_.find(node.input(k));
    if (it == constants_.end())
      fail_node(node, "its ", what, " \"", node.input(k),
                "\" is computed; qforge imports it only as a constant "
                "(an initializer)");
    return *it->second;
  }

  Shape dims_of(const onnx::NodeProto& node, const onnx::TensorProto& t, int64_t* count) const {
    Shape shape;
    *count = 1;
    for (int64_t d : t.dims()) {
      if (d < 0 || d > kMaxElements || *count > kMaxElements / std::max<int64_t>(d, 1))
        fail_node(node, "constant \"", t.name(), "\" has a dimension of ", d, " or more than ", kMaxElements,
                  " elements");
      *count *= d;
      shape.push_back(d);
    }
    if (t.data_location() == onnx::TensorProto_DataLocation_EXTERNAL)
      fail_node(node, "constant \"", t.name(),
                "\" is stored outside the file; qforge reads self-contained files");
    return shape;
  }

  Tensor floats(const onnx::NodeProto& node, int k, const char* what) const {
    const onnx::TensorProto& t = constant_proto(node, k, what);
    if (t.data_type() != onnx::TensorProto_DataType_FLOAT)
      fail_node(node, what, " \"", t.name(), "\" has data type ", t.data_type(), "; expected float32 (1)");
    int64_t count = 0;
    const Shape shape = dims_of(node, t, &count);
    std::vector<float> values(static_cast<std::size_t>(count));
    if (!t.raw_data().empty() || t.float_data_size() == 0) {
      if (t.raw_data().size() != static_cast<std::size_t>(count) * sizeof(float))
        fail_node(node, what, " \"", t.name(), "\" holds ", t.raw_data().size(), " bytes; its shape ",
                  shape_to_string(shape), " needs ", count * 4);
      if (count > 0) std::memcpy(values.data(), t.raw_data().data(), t.raw_data().size());
    } else {
      if (t.float_data_size() != count)
        fail_node(node, what, " \"", t.name(), "\" holds ", t.float_data_size(), " values; its shape ",
                  shape_to_string(shape), " needs ", count);
      std::copy(t.float_data().begin(), t.float_data().end(), values.begin());
    }
    for (float v : values)
      if (!std::isfinite(v))
        fail_node(node, what, " \"", t.name(), "\" holds ", v, "; a model's values are finite");
    return Tensor::from_vector(shape, values);
  }

  std::vector<int64_t> int64s(const onnx::NodeProto& node, int k, const char* what) const {
    const onnx::TensorProto& t = constant_proto(node, k, what);
    if (t.data_type() != onnx::TensorProto_DataType_INT64)
      fail_node(node, what, " \"", t.name(), "\" has data type ", t.data_type(), "; expected int64 (7)");
    int64_t count = 0;
    dims_of(node, t, &count);
    if (count > 16) fail_node(node, what, " \"", t.name(), "\" has ", count, " values; expected a shape");
    std::vector<int64_t> values(static_cast<std::size_t>(count));
    if (!t.raw_data().empty() || t.int64_data_size() == 0) {
      if (t.raw_data().size() != values.size() * sizeof(int64_t))
        fail_node(node, what, " \"", t.name(), "\" holds ", t.raw_data().size(), " bytes for ", count,
                  " int64");
      if (count > 0) std::memcpy(values.data(), t.raw_data().data(), t.raw_data().size());
    } else {
      if (t.int64_data_size() != count)
        fail_node(node, what, " \"", t.name(), "\" holds the wrong number of values");
      std::copy(t.int64_data().begin(), t.int64_data().end(), values.begin());
    }
    return values;
  }

  // ---- attributes, each of the type ONNX gives it ----------------------------------------------
  const onnx::AttributeProto* attribute(const onnx::NodeProto& node, const std::string& name,
                                        onnx::AttributeProto_AttributeType type) const {
    for (const onnx::AttributeProto& a : node.attribute())
      if (a.name() == name) {
        if (a.type() != type)
          fail_node(node, "attribute ", name, " has type ", a.type(), ", expected ", type);
        return &a;
      }
    return nullptr;
  }
  int64_t int_attr(const onnx::NodeProto& node, const std::string& name, int64_t fallback) const {
    const auto* a = attribute(node, name, onnx::AttributeProto_AttributeType_INT);
    return a ? a->i() : fallback;
  }
  float float_attr(const onnx::NodeProto& node, const std::string& name, float fallback) const {
    const auto* a = attribute(node, name, onnx::AttributeProto_AttributeType_FLOAT);
    return a ? a->f() : fallback;
  }
  std::vector<int64_t> ints_attr(const onnx::NodeProto& node, const std::string& name,
                                 std::vector<int64_t> fallback) const {
    const auto* a = attribute(node, name, onnx::AttributeProto_AttributeType_INTS);
    return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::move(fallback);
  }
  // Attributes this importer does not read must be absent (a model they change is refused).
  void only_attributes(const onnx::NodeProto& node, const std::set<std::string>& known) const {
    for (const onnx::AttributeProto& a : node.attribute())
      if (!known.count(a.name())) fail_node(node, "attribute \"", a.name(), "\" is not supported");
  }

  // One number for a 2-D attribute that must be the same along height and width (qforge's
  // layers are square); pads must also be the same at both ends.
  int64_t square(const onnx::NodeProto& node, const std::string& name, int64_t fallback, int64_t low,
                 int64_t high) const {
    const std::vector<int64_t> v = ints_attr(node, name, {});
    if (v.empty()) return fallback;
    const std::size_t expected = name == "pads" ? 4 : 2;
    if (v.size() != expected) fail_node(node, name, " has ", v.size(), " values; expected ", expected);
    for (int64_t x : v)
      if (x != v[0])
        fail_node(node, name, " ", shape_to_string(Shape(v.begin(), v.end())),
                  ": qforge's layers take the same value along height and width",
                  name == "pads" ? " and at both ends" : "");
    if (v[0] < low || v[0] > high) fail_node(node, name, " ", v[0], ": expected ", low, " to ", high);
    return v[0];
  }
  void no_auto_pad(const onnx::NodeProto& node) const {
    const auto* a = attribute(node, "auto_pad", onnx::AttributeProto_AttributeType_STRING);
    if (a && a->s() != "NOTSET" && a->s() != "VALID")
      fail_node(node, "auto_pad ", a->s(), " is not supported (explicit pads are)");
  }

  // ---- the walk ------------------------------------------------------------------------------
  bool is_join(const onnx::NodeProto& node) const {
    return node.op_type() == "Add" && node.input_size() == 2 && !constants_.count(node.input(0)) &&
           !constants_.count(node.input(1));
  }
  bool is_used(const std::string& value) const {
    return value == output_ || (consumers_.count(value) && !consumers_.at(value).empty());
  }
  const onnx::NodeProto& only_consumer(const std::string& value) const { return *consumers_.at(value).at(0); }

  // Follows `value` through single-consumer nodes into `chain`; returns the value where the
  // path ends: the graph's output, or a value whose one consumer is a joining Add.
  std::string walk(std::string value, Chain& chain) {
    for (;;) {
      const auto it = consumers_.find(value);
      const std::size_t users = it == consumers_.end() ? 0 : it->second.size();
      if (value == output_) {
        if (users) fail("the output \"", output_, "\" is also read by node \"", it->second[0]->name(), "\"");
        return value;
      }
      if (users == 0) fail("value \"", value, "\" ends a path but is not the graph's output");
      if (users == 1) {
        if (is_join(*it->second[0])) return value;
        value = layer(*it->second[0], value, chain);
      } else if (users == 2) {
        value = residual_block(value, {it->second[0], it->second[1]}, chain);
      } else {
        fail_node(*it->second[0], "value \"", value, "\" feeds ", users,
                  " nodes; qforge imports chains and residual blocks (a value feeding two branches)");
      }
    }
  }

  struct Branch {
    Chain chain;
    std::string end;  // the value the branch gives the join
    const onnx::NodeProto* join = nullptr;
    Shape shape;
  };

  Branch branch(const std::string& fork, const onnx::NodeProto& first, const Shape& at_fork) {
    Branch b;
    shape_ = at_fork;
    b.end = fork;
    if (is_join(first)) {  // the identity shortcut: the fork feeds the Add itself
      b.join = &first;
    } else {
      b.end = walk(layer(first, fork, b.chain), b.chain);
      if (b.end == output_)
        fail_node(
            first, "and another node both read \"", fork,
            "\", and the path through this one reaches the "
            "output without joining the other (qforge imports chains and residual blocks: two branches that "
            "meet at an Add)");
      b.join = &only_consumer(b.end);
    }
    b.shape = shape_;
    return b;
  }

  // value -> (residual, shortcut) -> Add [-> Relu]: a "residual" layer.
  std::string residual_block(const std::string& fork, std::array<const onnx::NodeProto*, 2> first,
                             Chain& chain) {
    const Shape at_fork = shape_;
    Branch a = branch(fork, *first[0], at_fork), b = branch(fork, *first[1], at_fork);
    if (a.join != b.join)
      fail_node(*a.join, "the branches from \"", fork, "\" end at different nodes (\"", a.join->name(),
                "\" and \"", b.join->name(), "\"); a residual block's two branches meet at one Add");
    const onnx::NodeProto& join = *a.join;
    visited_.insert(&join);
    if (a.chain.layers.empty() && b.chain.layers.empty()) fail_node(join, "adds a value to itself");
    if (a.shape != b.shape)
      fail_node(join, "adds ", shape_to_string(a.shape), " to ", shape_to_string(b.shape), " per image");
    if (join.output_size() != 1 || !join.attribute().empty())
      fail_node(join, "expected one output, no attributes");
    // The residual branch feeds the Add's first input (as PyTorch's `out += shortcut(x)` and
    // qforge's export write it), unless it is the identity: a branch without layers is the shortcut.
    if (a.end != join.input(0)) std::swap(a, b);
    if (a.chain.layers.empty()) std::swap(a, b);
    shape_ = a.shape;
    std::string out = join.output(0);
    bool has_relu = false;
    if (out != output_ && consumers_.count(out) && consumers_.at(out).size() == 1 &&
        only_consumer(out).op_type() == "Relu") {
      const onnx::NodeProto& relu = only_consumer(out);
      check_plain(relu, 1);
      visited_.insert(&relu);
      out = relu.output(0);
      has_relu = true;
    }
    nlohmann::json block = {{"type", "residual"}, {"layers", a.chain.layers}, {"relu", has_relu}};
    const std::string prefix = std::to_string(chain.layers.size()) + ".";
    chain.add_under(prefix + "residual.", a.chain);
    if (!b.chain.layers.empty()) {
      block["shortcut"] = b.chain.layers;
      chain.add_under(prefix + "shortcut.", b.chain);
    }
    chain.layers.push_back(block);
    return out;
  }

  // The node's domain is ONNX's, it reads `value` first, and its other outputs go nowhere.
  void check_plain(const onnx::NodeProto& node, int used_outputs) const {
    if (!node.domain().empty() && node.domain() != "ai.onnx")
      fail_node(node, "domain \"", node.domain(),
                "\" is not supported; qforge imports ONNX's own ops: ", kSupported);
    if (node.output_size() < used_outputs || node.output(0).empty()) fail_node(node, "has no output");
    for (int k = used_outputs; k < node.output_size(); ++k)
      if (!node.output(k).empty() && is_used(node.output(k)))
        fail_node(node, "output ", k, " (\"", node.output(k), "\") is used; qforge imports inference graphs");
  }

  void need_image(const onnx::NodeProto& node) const {
    if (shape_.size() != 3)
      fail_node(node, "expects an image (C,H,W) per sample, got ", shape_to_string(shape_),
                " (after a Flatten)");
  }

  // One node (and, for MatMul, the Add of its bias) into `chain`; returns the value it writes.
  std::string layer(const onnx::NodeProto& node, const std::string& value, Chain& chain) {
    visited_.insert(&node);
    const std::string& op = node.op_type();
    if (op != "Add" && (node.input_size() < 1 || node.input(0) != value))
      fail_node(node, "reads \"", value, "\" as input ", node.input_size() ? "other than the first" : "");
    check_plain(node, 1);
    if (op == "Conv") return conv(node, chain);
    if (op == "BatchNormalization") return batch_norm(node, chain);
    if (op == "Relu") {
      if (node.input_size() != 1 || node.attribute_size())
        fail_node(node, "expected one input, no attributes");
      chain.add({{"type", "relu"}}, {});
    } else if (op == "MaxPool" || op == "AveragePool") {
      pool(node, chain);
    } else if (op == "GlobalAveragePool") {
      need_image(node);
      chain.add({{"type", "adaptive_avgpool2d"}, {"size", 1}}, {});
      shape_ = {shape_[0], 1, 1};
    } else if (op == "Flatten") {
      only_attributes(node, {"axis"});
      if (int_attr(node, "axis", 1) != 1) fail_node(node, "axis ", int_attr(node, "axis", 1), ": expected 1");
      flatten(chain);
    } else if (op == "Reshape") {
      reshape(node, chain);
    } else if (op == "Gemm") {
      return gemm(node, chain);
    } else if (op == "MatMul") {
      return matmul(node, chain);
    } else if (op == "Pad") {
      pad(node);
    } else if (op == "Identity") {
    } else if (op == "Dropout") {
      if (node.input_size() > 2 && !node.input(2).empty())
        fail_node(node, "has a training_mode input; qforge imports inference graphs");
    } else if (op == "Add") {
      fail_node(node, "adds a constant to a computed value outside a MatMul's bias; not supported");
    } else {
      fail_node(node, "not supported; qforge imports ", kSupported,
                " (LSTM: export the float LSTM model from qforge's zoo instead)");
    }
    return node.output(0);
  }

  // A constant zero Pad: nothing when its pads are zero (PyTorch exports avg_pool2d so), or
  // padding that the next Conv or AveragePool (which counts padding) takes over.
  void pad(const onnx::NodeProto& node) {
    need_image(node);
    only_attributes(node, {"mode"});
    const auto* mode = attribute(node, "mode", onnx::AttributeProto_AttributeType_STRING);
    if (mode && mode->s() != "constant")
      fail_node(node, "mode ", mode->s(), " is not supported (constant is)");
    if (node.input_size() > 2 && !node.input(2).empty() &&
        floats(node, 2, "constant_value").to_vector() != std::vector<float>{0})
      fail_node(node, "pads with a value other than 0");
    const std::vector<int64_t> pads = int64s(node, 1, "pads");
    if (pads.size() != 8) fail_node(node, pads.size(), " pads; expected 8 for (N,C,H,W)");
    if (pads[0] || pads[1] || pads[4] || pads[5] || pads[3] != pads[2] || pads[6] != pads[2] ||
        pads[7] != pads[2] || pads[2] < 0 || pads[2] > kMaxExtent)
      fail_node(node, "pads only height and width, equally at both ends");
    if (pads[2] == 0) return;
    const onnx::NodeProto* next = is_used(node.output(0)) && consumers_.count(node.output(0))
                                      ? &only_consumer(node.output(0))
                                      : nullptr;
    if (!next || consumers_.at(node.output(0)).size() != 1 ||
        (next->op_type() != "Conv" && next->op_type() != "AveragePool"))
      fail_node(node, "pads ", pads[2],
                " before a node other than one Conv or AveragePool, which could take it over");
    pending_padding_ = pads[2];
  }
  int64_t take_pending_padding() { return std::exchange(pending_padding_, 0); }

  std::string conv(const onnx::NodeProto& node, Chain& chain) {
    need_image(node);
    only_attributes(node, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"});
    no_auto_pad(node);
    const Tensor weight = floats(node, 1, "weight");
    if (weight.dim() != 4)
      fail_node(node, "weight is ", shape_to_string(weight.shape()), "; expected (O,C/groups,kH,kW)");
    const int64_t out = weight.size(0), kernel = weight.size(2);
    if (weight.size(3) != kernel)
      fail_node(node, "kernel ", kernel, "x", weight.size(3), ": qforge's convolutions are square");
    if (const auto k = ints_attr(node, "kernel_shape", {});
        !k.empty() && (k.size() != 2 || k[0] != kernel || k[1] != kernel))
      fail_node(node, "kernel_shape disagrees with the weight ", shape_to_string(weight.shape()));
    const int64_t groups = int_attr(node, "group", 1);
    if (groups < 1 || shape_[0] % groups || out % groups || weight.size(1) * groups != shape_[0])
      fail_node(node, "weight ", shape_to_string(weight.shape()), " with group ", groups,
                " does not fit an input of ", shape_[0], " channels");
    const int64_t stride = square(node, "strides", 1, 1, kMaxExtent),
                  padding = square(node, "pads", 0, 0, kMaxExtent) + take_pending_padding(),
                  dilation = square(node, "dilations", 1, 1, kMaxExtent);
    std::vector<std::pair<std::string, Tensor>> tensors{{"weight", weight}};
    const bool has_bias = node.input_size() > 2 && !node.input(2).empty();
    if (has_bias) {
      const Tensor bias = floats(node, 2, "bias");
      if (bias.shape() != Shape{out})
        fail_node(node, "bias is ", shape_to_string(bias.shape()), "; expected (", out, ")");
      tensors.emplace_back("bias", bias);
    }
    auto side = [&](int64_t size) { return (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1; };
    const Shape next{out, side(shape_[1]), side(shape_[2])};
    if (next[1] < 1 || next[2] < 1)
      fail_node(node, "the kernel does not fit the input ", shape_to_string(shape_));
    chain.add({{"type", "conv2d"},
               {"in", shape_[0]},
               {"out", out},
               {"kernel", kernel},
               {"stride", stride},
               {"padding", padding},
               {"dilation", dilation},
               {"groups", groups},
               {"bias", has_bias}},
              tensors);
    shape_ = next;
    return node.output(0);
  }

  std::string batch_norm(const onnx::NodeProto& node, Chain& chain) {
    need_image(node);
    only_attributes(node, {"epsilon", "momentum", "training_mode", "spatial"});
    if (int_attr(node, "training_mode", 0) != 0)
      fail_node(node, "training_mode 1: qforge imports inference graphs");
    if (int_attr(node, "spatial", 1) != 1) fail_node(node, "spatial 0 is not supported");
    const double eps = float_attr(node, "epsilon", 1e-5f);
    if (!(eps > 0 && eps < 1)) fail_node(node, "epsilon ", eps, ": expected a number in (0, 1)");
    const int64_t channels = shape_[0];
    std::vector<std::pair<std::string, Tensor>> tensors;
    const char* names[] = {"weight", "bias", "running_mean", "running_var"};
    for (int k = 0; k < 4; ++k) {
      Tensor t = floats(node, k + 1, names[k]);
      if (t.shape() != Shape{channels})
        fail_node(node, names[k], " is ", shape_to_string(t.shape()), "; expected (", channels, ")");
      tensors.emplace_back(names[k], t);
    }
    for (float v : tensors[3].second.to_vector())
      if (v < 0) fail_node(node, "a running variance of ", v, " is negative");
    chain.add({{"type", "batchnorm2d"}, {"channels", channels}, {"eps", eps}}, tensors);
    return node.output(0);
  }

  void pool(const onnx::NodeProto& node, Chain& chain) {
    need_image(node);
    const bool is_max = node.op_type() == "MaxPool";
    only_attributes(node, {"kernel_shape", "strides", "pads", "dilations", "ceil_mode", "auto_pad",
                           "storage_order", "count_include_pad"});
    no_auto_pad(node);
    if (int_attr(node, "ceil_mode", 0) != 0) fail_node(node, "ceil_mode 1 is not supported");
    if (int_attr(node, "storage_order", 0) != 0) fail_node(node, "storage_order 1 is not supported");
    if (square(node, "dilations", 1, 1, 1) != 1) fail_node(node, "dilations are not supported");
    const int64_t kernel = square(node, "kernel_shape", 0, 1, kMaxExtent);
    if (kernel == 0) fail_node(node, "has no kernel_shape");
    const int64_t stride = square(node, "strides", 1, 1, kMaxExtent);
    const int64_t padded = is_max ? 0 : take_pending_padding();  // a Pad before it: counted, as zeros
    const int64_t padding = square(node, "pads", 0, 0, kernel / 2) + padded;
    if (padding > kernel / 2) fail_node(node, "padding ", padding, " is more than half the kernel ", kernel);
    if (!is_max && padding > padded && int_attr(node, "count_include_pad", 0) != 1)
      fail_node(
          node,
          "padding with count_include_pad 0; qforge's average pool counts the padding (PyTorch's default)");
    auto side = [&](int64_t size) { return (size + 2 * padding - kernel) / stride + 1; };
    const Shape next{shape_[0], side(shape_[1]), side(shape_[2])};
    if (next[1] < 1 || next[2] < 1)
      fail_node(node, "the window does not fit the input ", shape_to_string(shape_));
    chain.add({{"type", is_max ? "maxpool2d" : "avgpool2d"},
               {"kernel", kernel},
               {"stride", stride},
               {"padding", padding}},
              {});
    shape_ = next;
  }

  void flatten(Chain& chain) {
    if (shape_.size() == 1) return;  // already (features)
    chain.add({{"type", "flatten"}}, {});
    shape_ = {shape_[0] * shape_[1] * shape_[2]};
  }

  void reshape(const onnx::NodeProto& node, Chain& chain) {
    only_attributes(node, {"allowzero"});
    const std::vector<int64_t> target = int64s(node, 1, "shape");
    const int64_t features = shape_.size() == 1 ? shape_[0] : shape_[0] * shape_[1] * shape_[2];
    if (target.size() != 2 || (target[0] != 0 && target[0] != -1) ||
        (target[1] != -1 && target[1] != features))
      fail_node(node, "reshapes to ", shape_to_string(Shape(target.begin(), target.end())),
                "; qforge imports a Reshape "
                "only as a flatten to (N, features): (0 or -1, -1 or ",
                features, ")");
    flatten(chain);
  }

  // A linear layer: weight (out, in), optional bias (out).
  std::string linear(const onnx::NodeProto& node, Chain& chain, const Tensor& weight, const Tensor* bias,
                     const std::string& output) {
    if (shape_.size() != 1)
      fail_node(node, "expects features (N,K), got ", shape_to_string(shape_), " per sample; flatten first");
    if (weight.size(1) != shape_[0])
      fail_node(node, "weight ", shape_to_string(weight.shape()), " takes ", weight.size(1),
                " features, the input has ", shape_[0]);
    std::vector<std::pair<std::string, Tensor>> tensors{{"weight", weight}};
    if (bias) tensors.emplace_back("bias", *bias);
    chain.add(
        {{"type", "linear"}, {"in", weight.size(1)}, {"out", weight.size(0)}, {"bias", bias != nullptr}},
        tensors);
    shape_ = {weight.size(0)};
    return output;
  }

  static Tensor transposed(const Tensor& m) {
    Tensor t = Tensor::empty({m.size(1), m.size(0)});
    for (int64_t i = 0; i < m.size(0); ++i)
      for (int64_t j = 0; j < m.size(1); ++j) t.data()[j * m.size(0) + i] = m.data()[i * m.size(1) + j];
    return t;
  }

  static Tensor scaled(const Tensor& t, float factor) {
    std::vector<float> v = t.to_vector();
    for (float& x : v) x *= factor;
    return Tensor::from_vector(t.shape(), v);
  }

  std::string gemm(const onnx::NodeProto& node, Chain& chain) {
    only_attributes(node, {"alpha", "beta", "transA", "transB"});
    if (int_attr(node, "transA", 0) != 0) fail_node(node, "transA 1 is not supported");
    Tensor b = floats(node, 1, "weight");
    if (b.dim() != 2) fail_node(node, "weight is ", shape_to_string(b.shape()), "; expected a matrix");
    Tensor weight = int_attr(node, "transB", 0) ? b : transposed(b);  // (out, in)
    const float alpha = float_attr(node, "alpha", 1), beta = float_attr(node, "beta", 1);
    if (alpha != 1) weight = scaled(weight, alpha);
    if (node.input_size() > 2 && !node.input(2).empty()) {
      Tensor c = floats(node, 2, "bias");
      if (c.numel() != weight.size(0) || (c.dim() != 1 && !(c.dim() == 2 && c.size(0) == 1)))
        fail_node(node, "bias is ", shape_to_string(c.shape()), "; expected (", weight.size(0), ") or (1,",
                  weight.size(0), ")");
      c = scaled(Tensor::from_vector({weight.size(0)}, c.to_vector()), beta);
      return linear(node, chain, weight, &c, node.output(0));
    }
    return linear(node, chain, weight, nullptr, node.output(0));
  }

  // MatMul(x, W (in, out)) [+ Add(b (out))].
  std::string matmul(const onnx::NodeProto& node, Chain& chain) {
    if (node.attribute_size()) fail_node(node, "expected no attributes");
    const Tensor w = floats(node, 1, "weight");
    if (w.dim() != 2) fail_node(node, "weight is ", shape_to_string(w.shape()), "; expected (in, out)");
    const std::string& out = node.output(0);
    if (out != output_ && consumers_.count(out) && consumers_.at(out).size() == 1) {
      const onnx::NodeProto& add = only_consumer(out);
      if (add.op_type() == "Add" && add.input_size() == 2 && !is_join(add)) {
        check_plain(add, 1);
        visited_.insert(&add);
        const int k = add.input(0) == out ? 1 : 0;
        const Tensor b = floats(add, k, "bias");
        if (b.numel() != w.size(1) || b.dim() != 1)
          fail_node(add, "bias is ", shape_to_string(b.shape()), "; expected (", w.size(1), ")");
        return linear(node, chain, transposed(w), &b, add.output(0));
      }
    }
    return linear(node, chain, transposed(w), nullptr, out);
  }

  const onnx::ModelProto& model_;
  const onnx::GraphProto& graph_;
  std::string path_;
  std::map<std::string, const onnx::TensorProto*> constants_;  // initializers and Constant nodes' values
  std::map<std::string, std::vector<const onnx::NodeProto*>> consumers_;
  std::set<const onnx::NodeProto*> visited_;
  std::string input_, output_;
  Shape shape_;                  // of the value the walk is at, per sample
  int64_t pending_padding_ = 0;  // a Pad's, for the Conv or AveragePool right after it
};

}  // namespace

ImportedModel import_onnx(const std::string& bytes, const std::string& path) {
  onnx::ModelProto model;
  QF_CHECK(model.ParseFromString(bytes), path,
           ": not an ONNX model (the protobuf does not parse: a truncated or "
           "corrupt file?)");
  return Importer(model, path).run();
}

}  // namespace qforge::quant::onnx_io
