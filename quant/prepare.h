// prepare: turn a float model into its quantization-aware form (PyTorch's fuse_modules +
// prepare_qat), in one walk over the model in forward order:
//   fusion      runs of Conv-BN-ReLU / Linear-ReLU become one module (quant/fuse.h,
//               quant/qat_modules.h); fused-away layers become Identity, so every other
//               layer keeps its name; BN is folded (Note [BN folding], quant/bn_folding.h);
//   insertion   FakeQuantize goes exactly where the integer runtime quantizes: the network
//               input, each fused block's weights and output, each residual block's output
//               (after its add and ReLU), inside an LSTM (quant/qat_lstm.h); average pools
//               stay on their input's grid (QatAvgPool2d). Max pooling, flatten and
//               dropout pass quantized values through unchanged.
// The network output is the last fused layer's output quantizer; the override name
// "output" gives it its own spec (e.g. 8 bits in a 4-bit network: 16 logit levels tie the
// arg max) or leaves it float. A layer kept in float computes in float and quantizes its
// output for the next integer layer; if it is the last layer, its output stays float.
// quant/convert.h turns the result into the integer model.
#pragma once

#include "nn/module.h"
#include "quant/qat_modules.h"
#include "quant/qconfig.h"

namespace qforge::quant {

// The layers of a float model that have quantization of their own, which an override can
// name: "input", every Conv2d, Linear, LSTM and BasicBlock by dotted name, "output" —
// as (name, type). What an override may name, and what the agreement tests keep in float
// one at a time.
std::vector<std::pair<std::string, std::string>> overridable_layers(nn::Module& model);

// Rewrites `model` in place and wraps it; the float weights are shared, not copied.
std::shared_ptr<QatModel> prepare_qat(const nn::ModulePtr& model, const QuantSpec& config);

// Switches over every FakeQuantize / fused conv of a prepared model.
void set_observers(nn::Module& model, bool enabled, bool even_in_eval = false);
// Every fake quantizer's observer combines its batches' statistics through `reducer` (null:
// this process alone) — data parallelism (train/distributed.h). An observer that cannot is
// named in the error.
void reduce_statistics_with(nn::Module& model, const StatisticsReducer* reducer);
// reduce_statistics_with(model, reducer) for as long as it lives, and this process alone
// again however the scope ends (calibration, fit). A null model: nothing.
class ScopedStatisticsReducer {
 public:
  ScopedStatisticsReducer(nn::Module* model, const StatisticsReducer& reducer);
  ~ScopedStatisticsReducer();
  ScopedStatisticsReducer(const ScopedStatisticsReducer&) = delete;
  ScopedStatisticsReducer& operator=(const ScopedStatisticsReducer&) = delete;

 private:
  nn::Module* model_;
};
// Whether every fake quantizer's observer can (minmax, moving average, histogram, max).
bool can_reduce_statistics(nn::Module& model);
void set_fake_quant(nn::Module& model, bool enabled);
void freeze_batch_norm(nn::Module& model, bool frozen);
int64_t count_fake_quantizers(nn::Module& model);

}  // namespace qforge::quant
