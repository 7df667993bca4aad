// Module: the node of a model tree (PyTorch's nn.Module). A module owns named
// parameters (trained), buffers (state such as BatchNorm's running statistics) and
// child modules; names compose with dots: "layers.2.conv1.weight". Parameters and
// buffers are Tensor handles, so the layer's member and the registered entry are the
// same tensor, and load_state_dict copies into them in place.
// No hooks and no automatic registration: a layer registers what it owns.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/serialize.h"
#include "core/tensor.h"

namespace qforge::nn {

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& input) = 0;
  Tensor operator()(const Tensor& input) { return forward(input); }
  virtual std::string type_name() const = 0;  // "Conv2d", as in the config and in messages

  using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
  NamedTensors named_parameters() const;  // recursive, dotted names, registration order
  NamedTensors named_buffers() const;
  std::vector<std::pair<std::string, Module*>> named_modules();  // self first, as ""
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  std::vector<Tensor> parameters() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
  int64_t parameter_count() const;
  // Swaps child `index` for another module (quantization's prepare swaps layers so) and
  // tells this module, which may keep a typed member pointer to that child.
  void replace_child(std::size_t index, std::shared_ptr<Module> module) {
    children_.at(index).second = std::move(module);
    child_replaced(children_[index].first, children_[index].second);
  }

  void train(bool is_training = true);
  void eval() { train(false); }
  bool is_training() const { return is_training_; }
  void zero_grad();

  // Parameters and buffers by dotted name.
  TensorMap state_dict() const;
  // Copies values in; every name must exist on both sides with the same shape, and every
  // value must pass the finiteness gate (a file a diverged run wrote is refused by name).
  void load_state_dict(const TensorMap& state, const std::string& source = "state dict");
  void save(const std::string& path) const;  // atomic
  void load(const std::string& path);
  // Called on every module after load_state_dict copied values in, for modules that
  // mirror buffers into other state (quantization observers).
  virtual void state_loaded() {}
  // Note [Finiteness gate]: nothing non-finite is saved or converted. The gate
  // (first_non_finite) looks at every parameter and buffer and at what a module derives
  // from them for deployment (QAT's BN-folded weights, a quantizer's 1/scale); a module
  // names its derived values and the buffer values that are sentinels, not numbers (an
  // observer's min of +inf before it has seen data).
  virtual NamedTensors derived_values() const { return {}; }
  virtual bool is_sentinel(const std::string& buffer, float value) const { return false; }
  // State that is not a tensor — a dropout layer's random generator — so that a resumed
  // run draws the same numbers: {dotted module name: state}, and back.
  nlohmann::json random_state();
  void load_random_state(const nlohmann::json& state, const std::string& source);

 protected:
  // A module's own non-tensor state (null: none).
  virtual nlohmann::json own_random_state() const { return nullptr; }
  virtual void load_own_random_state(const nlohmann::json& state) {}
  // Modules holding typed pointers to children re-point them here.
  virtual void child_replaced(const std::string& name, const std::shared_ptr<Module>& module) {}

 protected:
  Tensor register_parameter(const std::string& name, Tensor tensor);
  Tensor register_buffer(const std::string& name, Tensor tensor);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }

 private:
  friend std::string first_non_finite(const Module& model);
  void collect(const std::string& prefix, bool parameters, NamedTensors& out) const;
  NamedTensors parameters_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool is_training_ = true;
};

using ModulePtr = std::shared_ptr<Module>;

// The first non-finite value of `model` (Note [Finiteness gate]) as "layers.0.weight holds
// nan at index 3"; empty when every value is finite.
std::string first_non_finite(const Module& model);

// The dotted name of child `name` under `prefix` ("" is the root): "layers.2" + "conv1".
inline std::string child_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace qforge::nn
