// The float exporter: a module tree walked in forward order, one ONNX node (or a few) per
// module — Conv, BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool, Flatten,
// Gemm, Add for residual blocks, and ONNX's LSTM for the zoo's LSTM classifier. The graph
// computes in float what the module computes.
#include <cmath>

#include "core/autograd.h"
#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/lstm.h"
#include "nn/module.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "quant/onnx/onnx_export.h"
#include "quant/onnx/onnx_graph.h"

namespace qforge::quant::onnx_io {

namespace {

class FloatExport {
 public:
  explicit FloatExport(onnx::ModelProto& proto) : g_(*proto.mutable_graph()) {}

  std::string lower(nn::Module& module, const std::string& path, const std::string& x) {
    const std::string name = path.empty() ? "model" : path;
    if (dynamic_cast<nn::Sequential*>(&module)) {
      std::string y = x;
      for (const auto& [child_name, child] : module.children())
        y = lower(*child, path.empty() ? child_name : path + "." + child_name, y);
      return y;
    }
    if (auto* net = dynamic_cast<nn::ResNet*>(&module)) {
      const std::string stem = lower(*net->stem, nn::child_path(path, "stem"), x);
      return lower(*net->head, nn::child_path(path, "head"),
                   lower(*net->layers, nn::child_path(path, "layers"), stem));
    }
    if (auto* block = dynamic_cast<nn::BasicBlock*>(&module)) {
      const std::string residual = lower(*block->residual, nn::child_path(path, "residual"), x);
      const std::string shortcut =
          block->shortcut ? lower(*block->shortcut, nn::child_path(path, "shortcut"), x) : x;
      g_.node("Add", {residual, shortcut}, name + ".sum", name);
      return lower(*block->relu, nn::child_path(path, "relu"), g_.last_output());
    }
    if (auto* classifier = dynamic_cast<nn::LstmClassifier*>(&module))
      return lstm_classifier(*classifier, name, x);
    if (auto* c = dynamic_cast<nn::Conv2d*>(&module)) return conv(*c, name, x);
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&module)) return batch_norm(*bn, name, x);
    if (auto* l = dynamic_cast<nn::Linear*>(&module)) {
      std::vector<std::string> inputs{x, floats(name + ".weight", l->weight)};
      if (l->bias.defined()) inputs.push_back(floats(name + ".bias", l->bias));
      GraphBuilder::set_int(g_.node("Gemm", inputs, name + ".gemm", name), "transB", 1);
      return g_.last_output();
    }
    if (dynamic_cast<nn::ReLU*>(&module)) return g_.node("Relu", {x}, name, name), g_.last_output();
    if (auto* p = dynamic_cast<nn::MaxPool2d*>(&module)) return pool("MaxPool", p->options, name, x);
    if (auto* p = dynamic_cast<nn::AvgPool2d*>(&module)) return pool("AveragePool", p->options, name, x);
    if (auto* a = dynamic_cast<nn::AdaptiveAvgPool2d*>(&module)) {
      if (a->out_height != 1 || a->out_width != 1)
        refuse("export: ", name,
               " (AdaptiveAvgPool2d): not exportable: only a pool to 1x1 (GlobalAveragePool) is exported "
               "from a float model");
      return g_.node("GlobalAveragePool", {x}, name, name), g_.last_output();
    }
    if (dynamic_cast<nn::Flatten*>(&module)) {
      GraphBuilder::set_int(g_.node("Flatten", {x}, name, name), "axis", 1);
      return g_.last_output();
    }
    if (dynamic_cast<nn::Dropout*>(&module) || dynamic_cast<nn::Identity*>(&module)) return x;
    refuse("export: ", name, " (", module.type_name(),
           "): not exportable: the float exporter covers Conv2d, BatchNorm2d, ReLU, pools, Flatten, "
           "Dropout, Linear "
           "and residual blocks");
  }

 private:
  std::string floats(const std::string& name, const Tensor& t) {
    return g_.floats(name, t.detach().to_vector(), std::vector<int64_t>(t.shape().begin(), t.shape().end()));
  }
  // The zoo's LSTM classifier: ONNX LSTM nodes (Note [LSTM in ONNX]), then its fc on the last h.
  std::string lstm_classifier(nn::LstmClassifier& model, const std::string& name, const std::string& x) {
    auto* lstm = dynamic_cast<nn::LSTM*>(model.lstm.get());
    if (!lstm) refuse("export: ", name, ".lstm (", model.lstm->type_name(), "): not a float LSTM");
    std::string sequence = sequence_input(g_, x, lstm->input_size(), name + ".lstm");
    const int64_t hidden = lstm->hidden_size(), gates = 4 * hidden;
    std::string last;
    for (int64_t l = 0; l < lstm->num_layers(); ++l) {
      const std::string layer = name + ".lstm.l" + std::to_string(l);
      const Tensor w = lstm->weight_ih[l].detach(), r = lstm->weight_hh[l].detach();
      std::vector<float> bias = to_onnx_gates(lstm->bias_ih[l].detach().data(), gates, 1);
      const std::vector<float> hidden_bias = to_onnx_gates(lstm->bias_hh[l].detach().data(), gates, 1);
      bias.insert(bias.end(), hidden_bias.begin(), hidden_bias.end());
      onnx::NodeProto& n = g_.node_with_outputs(
          "LSTM",
          {sequence,
           g_.floats(layer + ".W", to_onnx_gates(w.data(), gates, w.size(1)), {1, gates, w.size(1)}),
           g_.floats(layer + ".R", to_onnx_gates(r.data(), gates, hidden), {1, gates, hidden}),
           g_.floats(layer + ".B", bias, {1, 2 * gates})},
          {layer + ".Y", layer + ".Y_h"}, layer);
      GraphBuilder::set_int(n, "hidden_size", hidden);
      const std::string y = n.output(0), y_h = n.output(1);
      sequence = layer_sequence(g_, y, layer);
      last = y_h;
    }
    return lower(*model.fc, name.empty() || name == "model" ? "fc" : name + ".fc",
                 last_hidden(g_, last, name + ".lstm"));
  }

  std::string conv(const nn::Conv2d& c, const std::string& name, const std::string& x) {
    std::vector<std::string> inputs{x, floats(name + ".weight", c.weight)};
    if (c.bias.defined()) inputs.push_back(floats(name + ".bias", c.bias));
    onnx::NodeProto& n = g_.node("Conv", inputs, name, name);
    const Conv2dOptions& o = c.options;
    GraphBuilder::set_ints(n, "kernel_shape", pair_of(c.kernel_size, c.kernel_size));
    GraphBuilder::set_ints(n, "strides", pair_of(o.stride_height, o.stride_width));
    GraphBuilder::set_ints(n, "pads", {o.padding_height, o.padding_width, o.padding_height, o.padding_width});
    GraphBuilder::set_ints(n, "dilations", pair_of(o.dilation_height, o.dilation_width));
    GraphBuilder::set_int(n, "group", o.groups);
    return g_.last_output();
  }
  std::string batch_norm(const nn::BatchNorm2d& bn, const std::string& name, const std::string& x) {
    onnx::NodeProto& n = g_.node(
        "BatchNormalization",
        {x, floats(name + ".weight", bn.weight), floats(name + ".bias", bn.bias),
         floats(name + ".running_mean", bn.running_mean), floats(name + ".running_var", bn.running_var)},
        name, name);
    GraphBuilder::set_float(n, "epsilon", bn.eps);
    GraphBuilder::set_float(n, "momentum", 1.0f - bn.momentum);  // ONNX's momentum weighs the running value
    return g_.last_output();
  }
  std::string pool(const char* op, const Pool2dOptions& o, const std::string& name, const std::string& x) {
    onnx::NodeProto& n = g_.node(op, {x}, name, name);
    GraphBuilder::set_ints(n, "kernel_shape", pair_of(o.kernel_height, o.kernel_width));
    GraphBuilder::set_ints(n, "strides", pair_of(o.stride_height, o.stride_width));
    GraphBuilder::set_ints(n, "pads", {o.padding_height, o.padding_width, o.padding_height, o.padding_width});
    if (std::string(op) == "MaxPool")
      GraphBuilder::set_ints(n, "dilations", pair_of(o.dilation_height, o.dilation_width));
    else
      GraphBuilder::set_int(n, "count_include_pad", 1);
    return g_.last_output();
  }

  GraphBuilder g_;
};

}  // namespace

std::string export_float_onnx(nn::Module& model, const Shape& input_shape) {
  onnx::ModelProto proto = new_model(input_shape);
  FloatExport exporter(proto);
  const std::string logits = exporter.lower(model, "", "input");
  Shape one{1};
  one.insert(one.end(), input_shape.begin(), input_shape.end());
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t classes = model.forward(Tensor::zeros(one)).size(-1);
  model.train(was_training);
  GraphBuilder g(*proto.mutable_graph());
  add_output(proto, g, logits, classes);
  return serialize(proto);
}

}  // namespace qforge::quant::onnx_io
