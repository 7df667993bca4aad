#include "nn/module.h"

#include <cmath>
#include <set>
#include <utility>

namespace qforge::nn {

void Module::collect(const std::string& prefix, bool parameters, NamedTensors& out) const {
  for (const auto& [name, tensor] : parameters ? parameters_ : buffers_)
    out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", parameters, out);
}

Module::NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

Module::NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (const auto& [child_name, module] : child->named_modules())
      out.emplace_back(child_name.empty() ? name : name + "." + child_name, module);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (const auto& [child_name, module] : std::as_const(*child).named_modules())
      out.emplace_back(child_name.empty() ? name : name + "." + child_name, module);
  return out;
}

std::string first_non_finite(const Module& model) {
  auto scan = [](const std::string& name, const Tensor& tensor, const Module* owner) -> std::string {
    if (tensor.dtype() != DType::f32) return "";
    const float* v = tensor.data();
    for (int64_t i = 0; i < tensor.numel(); ++i)
      if (!std::isfinite(v[i]) && !(owner && owner->is_sentinel(name, v[i])))
        return name + " holds " + std::to_string(v[i]) +
               (tensor.numel() > 1 ? " at index " + std::to_string(i) : "");
    return "";
  };
  const auto modules = model.named_modules();
  for (const auto& [path, module] : modules) {
    const std::string prefix = path.empty() ? "" : path + ".";
    for (const auto& [name, tensor] : module->parameters_)
      if (std::string found = scan(name, tensor, nullptr); !found.empty()) return prefix + found;
    for (const auto& [name, tensor] : module->buffers_)
      if (std::string found = scan(name, tensor, module); !found.empty()) return prefix + found;
  }
  // Derived values last: an infinite parameter is named as itself, not as what it folds into.
  for (const auto& [path, module] : modules) {
    const std::string prefix = path.empty() ? "" : path + ".";
    for (const auto& [name, tensor] : module->derived_values())
      if (std::string found = scan(name, tensor, nullptr); !found.empty())
        return prefix + found + " (derived from its parameters)";
  }
  return "";
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, tensor] : named_parameters()) out.push_back(tensor);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t count = 0;
  for (const Tensor& tensor : parameters()) count += tensor.numel();
  return count;
}

void Module::train(bool is_training) {
  is_training_ = is_training;
  for (auto& [name, child] : children_) child->train(is_training);
}

void Module::zero_grad() {
  for (Tensor& tensor : parameters()) tensor.zero_grad();
}

Tensor Module::register_parameter(const std::string& name, Tensor tensor) {
  tensor.set_requires_grad(true);
  parameters_.emplace_back(name, tensor);
  return tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor tensor) {
  buffers_.emplace_back(name, tensor);
  return tensor;
}

TensorMap Module::state_dict() const {
  TensorMap state;
  for (auto& [name, tensor] : named_parameters()) state[name] = tensor;
  for (auto& [name, tensor] : named_buffers()) state[name] = tensor;
  return state;
}

void Module::load_state_dict(const TensorMap& state, const std::string& source) {
  TensorMap own = state_dict();
  for (const auto& [name, tensor] : own) {
    auto found = state.find(name);
    QF_CHECK(found != state.end(), source, ": missing tensor \"", name, "\" (expected shape ", tensor.shape(),
             ")");
    QF_CHECK(found->second.shape() == tensor.shape() && found->second.dtype() == tensor.dtype(), source,
             ": tensor \"", name, "\" has shape ", found->second.shape(), " ",
             dtype_name(found->second.dtype()), ", the model expects ", tensor.shape(), " ",
             dtype_name(tensor.dtype()));
  }
  for (const auto& [name, tensor] : state)
    QF_CHECK(own.count(name), source, ": unexpected tensor \"", name, "\" (not in this model)");
  for (auto& [name, tensor] : own) tensor.copy_from(state.at(name));
  const std::string non_finite = first_non_finite(*this);
  QF_CHECK(non_finite.empty(), source, ": ", non_finite,
           " — the file holds a diverged model; train again with a lower learning rate");
  for (auto& [name, module] : named_modules()) module->state_loaded();
}

void Module::save(const std::string& path) const {
  save_tensor_file(path, state_dict(), {{"kind", "state_dict"}, {"model", type_name()}});
}

void Module::load(const std::string& path) { load_state_dict(load_tensor_file(path).tensors, path); }

nlohmann::json Module::random_state() {
  nlohmann::json state = nlohmann::json::object();
  for (auto& [name, module] : named_modules())
    if (nlohmann::json own = module->own_random_state(); !own.is_null()) state[name] = own;
  return state;
}

void Module::load_random_state(const nlohmann::json& state, const std::string& source) {
  QF_CHECK(state.is_object(), source, ": random_state: expected an object");
  for (auto& [name, module] : named_modules()) {
    const bool has_state = !module->own_random_state().is_null();
    QF_CHECK(has_state == state.contains(name), source,
             ": random_state: ", has_state ? "missing the state of " : "unexpected state for ", "\"", name,
             "\"");
    if (has_state) module->load_own_random_state(state[name]);
  }
}

}  // namespace qforge::nn
