#include "quant/numeric_suite.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/error.h"
#include "quant/fake_quantize.h"
#include "quant/observer_factory.h"

namespace qforge::quant {

double sqnr_db(const Tensor& reference, const Tensor& approx) {
  QF_CHECK(reference.shape() == approx.shape(), "sqnr_db: shapes ", reference.shape(), " and ",
           approx.shape(), " differ");
  const float* x = reference.data();
  const float* y = approx.data();
  double signal = 0, noise = 0;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    const double e = double{x[i]} - double{y[i]};
    signal += double{x[i]} * x[i], noise += e * e;
  }
  return noise == 0 ? INFINITY : 10 * std::log10(signal / noise);
}

double weight_sqnr_db(const Tensor& weight, int bits) {
  const QuantScheme scheme{.bits = bits, .is_signed = true, .symmetric = true, .axis = 0};
  auto observer = make_observer(ObserverChoice{ObserverKind::minmax}, scheme);
  const Tensor w = weight.detach();
  observer->observe(w);
  return sqnr_db(w, fake_quantize(w, observer->calculate_qparams(), scheme.range()));
}

namespace {

// Stands in for a layer during one forward pass and keeps what the layer returned.
class OutputLogger : public nn::Module {
 public:
  explicit OutputLogger(nn::ModulePtr layer) : layer(std::move(layer)) {
    register_module("layer", this->layer);
  }
  Tensor forward(const Tensor& input) override { return output = layer->forward(input); }
  std::string type_name() const override { return "OutputLogger"; }

  nn::ModulePtr layer;
  Tensor output;
};

// The outputs of `layers` on one forward pass of `model`. A logger replaces each layer in
// its parent for the pass; the layers are put back before returning, even on error.
std::map<std::string, Tensor> record_outputs(nn::Module& model, const std::vector<std::string>& layers,
                                             const Tensor& input) {
  struct Slot {
    nn::Module* parent;
    std::size_t index;
    std::string name;
    std::shared_ptr<OutputLogger> logger;
  };
  std::vector<Slot> slots;
  for (const auto& [prefix, parent] : model.named_modules())
    for (std::size_t i = 0; i < parent->children().size(); ++i) {
      const std::string name = (prefix.empty() ? "" : prefix + ".") + parent->children()[i].first;
      if (std::find(layers.begin(), layers.end(), name) != layers.end())
        slots.push_back({parent, i, name, std::make_shared<OutputLogger>(parent->children()[i].second)});
    }
  for (const std::string& name : layers) {
    bool found = false;
    for (const Slot& slot : slots) found = found || slot.name == name;
    QF_CHECK(found, "compare_model_outputs: the ", model.type_name(), " has no layer named \"", name, "\"");
  }
  auto restore = [&] {
    for (const Slot& slot : slots) slot.parent->replace_child(slot.index, slot.logger->layer);
  };
  for (const Slot& slot : slots) slot.parent->replace_child(slot.index, slot.logger);
  const bool was_training = model.is_training();
  try {
    NoGradGuard no_grad;
    model.eval();
    (void)model.forward(input);
  } catch (...) {
    restore();
    model.train(was_training);
    throw;
  }
  restore();
  model.train(was_training);
  std::map<std::string, Tensor> outputs;
  for (const Slot& slot : slots) outputs[slot.name] = slot.logger->output;
  return outputs;
}

}  // namespace

std::map<std::string, double> compare_model_outputs(nn::Module& float_model, nn::Module& quantized_model,
                                                    const std::vector<std::string>& layers,
                                                    const Tensor& input) {
  const std::map<std::string, Tensor> reference = record_outputs(float_model, layers, input);
  const std::map<std::string, Tensor> quantized = record_outputs(quantized_model, layers, input);
  std::map<std::string, double> sqnr;
  for (const std::string& name : layers) sqnr[name] = sqnr_db(reference.at(name), quantized.at(name));
  return sqnr;
}

}  // namespace qforge::quant
