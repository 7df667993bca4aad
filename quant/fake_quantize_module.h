// FakeQuantize as a module (PyTorch's torch.ao.quantization.FakeQuantize): an observer
// plus the fake-quant op, with two switches, so one module serves calibration (observe,
// no fake quant), PTQ simulation (fake quant with frozen parameters) and QAT (both).
// Scale, zero point and the observer's state are buffers, so checkpoints carry them;
// with a learnable spec, scale and zero point are parameters initialized from the
// observer on the first observed batch, then trained (LSQ).
#pragma once

#include <memory>

#include "nn/module.h"
#include "quant/observer.h"
#include "quant/qconfig.h"

namespace qforge::quant {

class FakeQuantize : public nn::Module {
 public:
  // channels: the extent of the quantization axis (1 for per tensor).
  FakeQuantize(const QuantizerSpec& spec, int64_t channels);
  Tensor forward(const Tensor& input) override;
  // forward(relu(input)), in one pass over the activation where it can (Note [ReLU in the
  // quantizer], fake_quantize.cpp): the values, gradients, observer statistics and learned
  // parameters are those of the relu op followed by forward.
  Tensor forward_relu(const Tensor& input);
  std::string type_name() const override { return "FakeQuantize"; }
  void state_loaded() override;
  // Before it has seen data an observer's min is +inf and its max −inf (a max calibrator
  // keeps its min so for good); any other non-finite value is a diverged range.
  bool is_sentinel(const std::string& buffer, float value) const override;
  // 1/scale, which fake quantization multiplies by (a scale of 1e-40 is finite, its inverse not).
  NamedTensors derived_values() const override;

  // Observers watch training batches only, so evaluation never moves them; calibration
  // (PTQ) runs the model in eval mode with even_in_eval set.
  void enable_observer(bool enabled, bool even_in_eval = false) {
    is_observing_ = enabled;
    is_observing_in_eval_ = enabled && even_in_eval;
  }
  void enable_fake_quant(bool enabled) { is_fake_quantizing_ = enabled; }
  // Data parallelism: its observer combines each batch's statistics through `reducer` (null:
  // this process alone). The observer must be able to (Observer::can_reduce).
  void set_statistics_reducer(const StatisticsReducer* reducer);
  bool can_reduce_statistics() const;
  bool is_fake_quantizing() const { return is_fake_quantizing_; }
  // Whether the next forward updates the observer (training, or calibration in eval).
  bool is_observing_now() const { return is_observing_ && (is_training() || is_observing_in_eval_); }
  QuantParams qparams() const;  // the current scale and zero point
  // Whether the parameters come from data (an observer saw some, or LSQ was initialized).
  bool is_calibrated() const;
  // Fake-quantizing with calibrated parameters no observer is moving: the simulation may run
  // the deployed arithmetic against it (Note [The simulation runs the deployed arithmetic]).
  bool is_settled() const { return is_fake_quantizing() && is_calibrated() && !is_observing_now(); }
  const QuantizerSpec& spec() const { return spec_; }
  // Where it sits in the prepared model ("model.3.output_quant"), for messages; prepare_qat sets it.
  void set_path(std::string path) { path_ = std::move(path); }
  const std::string& path() const { return path_; }

 private:
  void sync_buffers_from_observer();
  Tensor observe_and_quantize(const Tensor& input, bool relu);
  Tensor binary_quantize(const Tensor& weight);  // Note [Binary weights]
  QuantizerSpec spec_;
  std::string path_ = "FakeQuantize";
  int64_t channels_;
  std::unique_ptr<Observer> observer_;
  bool is_observing_ = true, is_observing_in_eval_ = false, is_fake_quantizing_ = true;
  Tensor scale_, zero_point_;  // (C): buffers, or parameters when learnable
  std::vector<std::pair<std::string, Tensor>> observer_buffers_;
  Tensor is_initialized_;  // (1): learnable parameters have been set from the observer
};

}  // namespace qforge::quant
