#include "quant/prepare.h"

#include <algorithm>

#include "nn/lstm.h"
#include "nn/module.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"
#include "quant/fuse.h"
#include "quant/qat_lstm.h"

namespace qforge::quant {

namespace {

template <typename T>
std::shared_ptr<T> as(const nn::ModulePtr& module) {
  return std::dynamic_pointer_cast<T>(module);
}

// The walk's state: the quantizer that produced the value flowing at this point (null
// when it is float), so an average pool can re-round onto its grid.
struct Walk {
  const QuantSpec& config;
  std::shared_ptr<FakeQuantize> current;
};

void rewrite(nn::Module& parent, const std::string& prefix, Walk& walk);

// Fuses the run starting at child i into one Qat module; returns how many children it took.
std::size_t fuse_at(nn::Module& parent, std::size_t i, const std::string& path, const FusionRun& run,
                    Walk& walk) {
  if (run.conv) {
    auto fused =
        std::make_shared<QatConv2d>(run.conv, run.bn, run.has_relu, walk.config.for_module(path, "Conv2d"));
    fused->input_quant = walk.current;
    parent.replace_child(i, fused);
    walk.current = fused->output_quant;
  } else {
    auto fused =
        std::make_shared<QatLinear>(run.linear, run.has_relu, walk.config.for_module(path, "Linear"));
    fused->input_quant = walk.current;
    parent.replace_child(i, fused);
    walk.current = fused->output_quant;
  }
  for (std::size_t k = 1; k < run.length; ++k) parent.replace_child(i + k, std::make_shared<nn::Identity>());
  return run.length;
}

void rewrite_block(nn::BasicBlock& block, const std::string& path, Walk& walk) {
  // The residual and the shortcut both start from the block input.
  const std::shared_ptr<FakeQuantize> block_input = walk.current;
  for (const auto& [name, child] : block.children())
    if (name != "relu") {
      walk.current = block_input;
      rewrite(*child, nn::child_path(path, name), walk);
    }
  const QConfig q = walk.config.for_module(path, "BasicBlock");
  walk.current = nullptr;
  if (q.is_float) return;
  // The block's output is quantized after its add and ReLU (BasicBlock::relu, an Identity in
  // a block without one): relu becomes Sequential(relu, output quantizer).
  auto& children = block.children();
  for (std::size_t k = 0; k < children.size(); ++k)
    if (children[k].first == "relu") {
      auto output_quant = std::make_shared<FakeQuantize>(q.activation, 1);
      block.replace_child(
          k, std::make_shared<nn::Sequential>(std::vector<nn::ModulePtr>{children[k].second, output_quant}));
      walk.current = output_quant;
    }
}

// Visits children in registration order, which is forward order for every model qforge builds.
void rewrite(nn::Module& parent, const std::string& prefix, Walk& walk) {
  auto& children = parent.children();
  for (std::size_t i = 0; i < children.size();) {
    const auto [name, child] = children[i];
    const std::string path = nn::child_path(prefix, name);
    if (auto run = match_fusion(children, i)) {
      i += fuse_at(parent, i, path, *run, walk);
      continue;
    }
    ++i;
    if (auto lstm = as<nn::LSTM>(child)) {
      const QConfig q = walk.config.for_module(path, "LSTM");
      if (q.is_float) {
        walk.current = nullptr;
        continue;
      }
      auto quantized = std::make_shared<QatLSTM>(lstm, q);
      quantized->input_quant = walk.current;
      parent.replace_child(i - 1, quantized);
      walk.current = quantized->hidden_quant.back();
      continue;
    }
    if (as<nn::AvgPool2d>(child) || as<nn::AdaptiveAvgPool2d>(child)) {
      if (walk.current) parent.replace_child(i - 1, std::make_shared<QatAvgPool2d>(child, walk.current));
      continue;
    }
    if (auto block = as<nn::BasicBlock>(child)) {
      rewrite_block(*block, path, walk);
      continue;
    }
    rewrite(*child, path, walk);
  }
}

// Gives a fused layer another output quantizer, or none (`float`).
void replace_output_quantizer(nn::Module& layer, std::shared_ptr<FakeQuantize>& member, const QConfig& q) {
  member = q.is_float ? nullptr : std::make_shared<FakeQuantize>(q.activation, 1);
  auto& children = layer.children();
  for (std::size_t k = 0; k < children.size(); ++k)
    if (children[k].first == "output_quant")
      layer.replace_child(k, member ? nn::ModulePtr(member) : std::make_shared<nn::Identity>());
}

template <typename T, typename F>
void for_each(nn::Module& model, F f) {
  for (auto& [name, module] : model.named_modules())
    if (auto* typed = dynamic_cast<T*>(module)) f(*typed);
}

// Every override must name a layer or a type this model has that has quantization of its
// own: a misspelt name, or a max pool (which passes quantized values through), would
// otherwise be silently ignored.
void check_overrides(nn::Module& model, const QuantSpec& config) {
  std::vector<std::string> all_names;
  for (auto& [name, module] : model.named_modules()) all_names.push_back(name);
  std::vector<std::string> names{"input", "output"}, types{"Input", "Output"};
  for (const auto& [name, type] : overridable_layers(model)) {
    if (name != "input" && name != "output") names.push_back(name);
    if (std::find(types.begin(), types.end(), type) == types.end()) types.push_back(type);
  }
  auto listed = [](const std::vector<std::string>& items) {
    std::string text;
    for (std::size_t i = 0; i < items.size() && i < 24; ++i) text += (i ? ", " : "") + items[i];
    return items.size() > 24 ? text + ", ..." : text;
  };
  for (std::size_t i = 0; i < config.overrides.size(); ++i) {
    const QConfigOverride& o = config.overrides[i];
    if (!o.name.empty() && std::find(names.begin(), names.end(), o.name) == names.end()) {
      auto named = std::find(all_names.begin(), all_names.end(), o.name);
      if (named == all_names.end())
        QF_FAIL("quant.overrides.", i, ": name \"", o.name,
                "\" is no layer of this model (its layers: ", listed(names), ")");
      nn::Module* module = model.named_modules()[named - all_names.begin()].second;
      QF_FAIL(
          "quant.overrides.", i, ": \"", o.name, "\" is a ", module->type_name(),
          ", which has no quantization of its own (pooling, ReLU, flatten and dropout pass quantized values "
          "through; BatchNorm folds into its conv); name one of: ",
          listed(names));
    }
    if (!o.type.empty())
      QF_CHECK(std::find(types.begin(), types.end(), o.type) != types.end(), "quant.overrides.", i,
               ": type \"", o.type,
               "\" is no layer type with quantization of its own in this model (it has: ", listed(types),
               ")");
  }
}

}  // namespace

std::vector<std::pair<std::string, std::string>> overridable_layers(nn::Module& model) {
  std::vector<std::pair<std::string, std::string>> layers{{"input", "Input"}};
  for (auto& [name, module] : model.named_modules()) {
    const std::string type = module->type_name();
    if (type == "Conv2d" || type == "Linear" || type == "LSTM" || type == "BasicBlock")
      layers.emplace_back(name, type);
  }
  layers.emplace_back("output", "Output");
  return layers;
}

std::shared_ptr<QatModel> prepare_qat(const nn::ModulePtr& model, const QuantSpec& config) {
  QF_CHECK(!as<QatModel>(model), "prepare: the model is already prepared");
  check_overrides(*model, config);
  QF_CHECK(
      !config.for_module("input", "Input").is_float,
      "quant.overrides: the network input is always quantized; \"float\" applies to layers and \"output\"");
  auto prepared = std::make_shared<QatModel>(model, config.for_module("input", "Input"));
  Walk walk{config, prepared->input_quant};
  rewrite(*model, "", walk);
  // The network output's quantizer (override name "output", type "Output") is the output
  // quantizer of the last fused layer: its requantization produces the network's result.
  // A last layer kept in float keeps float outputs unless "output" says otherwise.
  nn::Module* last = nullptr;
  std::shared_ptr<FakeQuantize>* last_output = nullptr;
  bool is_last_float = false;
  for (auto& [name, module] : model->named_modules()) {  // registration order = forward order
    if (auto* conv = dynamic_cast<QatConv2d*>(module))
      last = conv, last_output = &conv->output_quant, is_last_float = conv->weight_quant == nullptr;
    else if (auto* fc = dynamic_cast<QatLinear*>(module))
      last = fc, last_output = &fc->output_quant, is_last_float = fc->weight_quant == nullptr;
  }
  if (config.has_override("output", "Output")) {
    QF_CHECK(
        last,
        "quant.overrides: \"output\" names the last quantized conv or linear layer; this model has none");
    replace_output_quantizer(*last, *last_output, config.for_module("output", "Output"));
  } else if (last && is_last_float) {
    replace_output_quantizer(*last, *last_output, QConfig{.is_float = true});
  }
  for (auto& [name, module] : prepared->named_modules())
    if (auto* q = dynamic_cast<FakeQuantize*>(module)) q->set_path(name);
  prepared->train(model->is_training());
  return prepared;
}

void set_observers(nn::Module& model, bool enabled, bool even_in_eval) {
  for_each<FakeQuantize>(model, [&](FakeQuantize& q) { q.enable_observer(enabled, even_in_eval); });
}

void reduce_statistics_with(nn::Module& model, const StatisticsReducer* reducer) {
  for_each<FakeQuantize>(model, [&](FakeQuantize& q) { q.set_statistics_reducer(reducer); });
}

ScopedStatisticsReducer::ScopedStatisticsReducer(nn::Module* model, const StatisticsReducer& reducer)
    : model_(model) {
  if (model_ != nullptr) reduce_statistics_with(*model_, &reducer);
}

ScopedStatisticsReducer::~ScopedStatisticsReducer() {
  if (model_ != nullptr) reduce_statistics_with(*model_, nullptr);
}

bool can_reduce_statistics(nn::Module& model) {
  bool all = true;
  for_each<FakeQuantize>(model, [&](FakeQuantize& q) { all = all && q.can_reduce_statistics(); });
  return all;
}

void set_fake_quant(nn::Module& model, bool enabled) {
  for_each<FakeQuantize>(model, [&](FakeQuantize& q) { q.enable_fake_quant(enabled); });
}

void freeze_batch_norm(nn::Module& model, bool frozen) {
  for_each<QatConv2d>(model, [&](QatConv2d& c) { c.freeze_bn(frozen); });
}

int64_t count_fake_quantizers(nn::Module& model) {
  int64_t count = 0;
  for_each<FakeQuantize>(model, [&](FakeQuantize&) { ++count; });
  return count;
}

}  // namespace qforge::quant
