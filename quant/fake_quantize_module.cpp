#include "quant/fake_quantize_module.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/profiler.h"
#include "quant/fake_quantize.h"
#include "quant/observer_factory.h"

namespace qforge::quant {

FakeQuantize::FakeQuantize(const QuantizerSpec& spec, int64_t channels)
    : spec_(spec), channels_(channels), observer_(make_observer(spec.observer, spec.scheme)) {
  QF_CHECK(channels >= 1, "FakeQuantize: channels must be >= 1");
  const Shape shape{channels};
  if (spec.is_learnable) {
    scale_ = register_parameter("scale", Tensor::ones(shape));
    // A symmetric scheme's zero point is fixed by the scheme (0 when signed): learning it
    // would make the quantizer affine, which the integer runtime does not expect. PyTorch's
    // _LearnableFakeQuantize learns it regardless and lets symmetric weights drift.
    zero_point_ = spec.scheme.symmetric ? register_buffer("zero_point", Tensor::zeros(shape))
                                        : register_parameter("zero_point", Tensor::zeros(shape));
    is_initialized_ = register_buffer("initialized", Tensor::zeros({1}));
  } else {
    scale_ = register_buffer("scale", Tensor::ones(shape));
    zero_point_ = register_buffer("zero_point", Tensor::zeros(shape));
  }
  // The observer's state mirrored into buffers of fixed shape (Module::state_loaded
  // pushes them back): min/max per channel, plus the histogram for histogram observers.
  const float inf = std::numeric_limits<float>::infinity();
  const bool is_histogram = spec.observer.kind == ObserverKind::histogram;
  const int64_t extent = is_histogram ? 1 : channels;
  observer_buffers_.emplace_back("min", register_buffer("observer_min", Tensor::full({extent}, inf)));
  observer_buffers_.emplace_back("max", register_buffer("observer_max", Tensor::full({extent}, -inf)));
  if (is_histogram)
    observer_buffers_.emplace_back("histogram",
                                   register_buffer("observer_histogram", Tensor::zeros({kHistogramBins})));
}

void FakeQuantize::sync_buffers_from_observer() {
  TensorMap state = observer_->state();
  for (auto& [key, buffer] : observer_buffers_)
    if (state.count(key)) buffer.copy_from(state.at(key));
}

void FakeQuantize::state_loaded() {
  // Never observed: min and max still at their sentinels (the max calibrator keeps only a max).
  if (is_sentinel("observer_min", observer_buffers_[0].second.data()[0]) &&
      is_sentinel("observer_max", observer_buffers_[1].second.data()[0]))
    return;
  TensorMap state;
  for (auto& [key, buffer] : observer_buffers_) state[key] = buffer;
  observer_->load_state(state);
}

bool FakeQuantize::is_sentinel(const std::string& buffer, float value) const {
  const float inf = std::numeric_limits<float>::infinity();
  return (buffer == "observer_min" && value == inf) || (buffer == "observer_max" && value == -inf);
}

nn::Module::NamedTensors FakeQuantize::derived_values() const {
  Tensor inverse = Tensor::empty({channels_});
  for (int64_t c = 0; c < channels_; ++c) inverse.data()[c] = 1.0f / scale_.data()[c];
  return {{"inverse_scale", inverse}};
}

QuantParams FakeQuantize::qparams() const {
  QuantParams params;
  params.axis = spec_.scheme.axis;
  for (int64_t c = 0; c < channels_; ++c) {
    // A learned scale is used clamped to eps (forward clamps it before quantizing), so what
    // convert and the pools read is what the simulation computes with.
    const float scale = scale_.data()[c];
    params.scale.push_back(spec_.is_learnable ? std::max(scale, std::numeric_limits<float>::epsilon())
                                              : scale);
    params.zero_point.push_back(static_cast<int64_t>(std::nearbyint(zero_point_.data()[c])));
  }
  return params;
}

bool FakeQuantize::is_calibrated() const {
  // A binary quantizer's scale comes from the weights themselves (convert recomputes it from them).
  if (spec_.scheme.binary && !spec_.is_learnable) return true;
  return observer_->has_observed() || (spec_.is_learnable && is_initialized_.data()[0] != 0.0f);
}

Tensor FakeQuantize::forward(const Tensor& input) {
  const ProfileScope profile("forward", "fake_quantize (observer and rounding)");
  try {
    return observe_and_quantize(input, false);
  } catch (const Error& error) {  // name the quantizer: a diverged range says where it diverged
    QF_FAIL(path_, ": ", error.what());
  }
}

Tensor FakeQuantize::forward_relu(const Tensor& input) {
  // A binary quantizer quantizes weights, which no ReLU precedes; fake quantization off
  // leaves the relu op itself.
  if (spec_.scheme.binary || !is_fake_quantizing_) return forward(relu(input));
  const ProfileScope profile("forward", "fake_quantize (observer and rounding)");
  try {
    return observe_and_quantize(input, true);
  } catch (const Error& error) {
    QF_FAIL(path_, ": ", error.what());
  }
}

// Binary weights: α = mean |w| per channel at every step (a statistic of the weights, not of
// data: no observer), or learned from that start (LSQ's gradient scale, 1/√N for levels ±1).
Tensor FakeQuantize::binary_quantize(const Tensor& weight) {
  const bool has_learned = spec_.is_learnable && is_initialized_.data()[0] != 0.0f;
  if (!has_learned) {
    const std::vector<float> alpha = binary_scale(weight.detach(), spec_.scheme.axis);
    QF_CHECK(static_cast<int64_t>(alpha.size()) == channels_, "FakeQuantize: ", alpha.size(),
             " binary scales, expected ", channels_);
    for (int64_t c = 0; c < channels_; ++c) {
      QF_CHECK(std::isfinite(alpha[c]), "the binary scale (mean |w|) of channel ", c,
               " is not finite (the weights diverged)");
      scale_.data()[c] = alpha[c];
    }
    if (spec_.is_learnable) is_initialized_.data()[0] = 1.0f;
  }
  if (!is_fake_quantizing_) return weight;
  if (spec_.is_learnable)
    for (int64_t c = 0; c < channels_; ++c)
      scale_.data()[c] = std::max(scale_.data()[c], std::numeric_limits<float>::epsilon());
  return fake_quantize_binary(weight, scale_, spec_.scheme.axis,
                              lsq_gradient_scale(weight.numel() / channels_, spec_.scheme.range()));
}

// relu: of relu(input) (forward_relu); the observer sees relu(input) too.
Tensor FakeQuantize::observe_and_quantize(const Tensor& input, bool relu) {
  if (spec_.scheme.binary) return binary_quantize(input);
  // In training, a learnable quantizer takes the observer's parameters once, then trains
  // them; its observer stops there (PyTorch's _LearnableFakeQuantize in param-learning
  // mode), which also spares QAT the histogram observer's cost on every batch. Explicit
  // calibration (observing in eval, as PTQ does) follows the observer over every batch.
  const bool has_learned = spec_.is_learnable && is_initialized_.data()[0] != 0.0f && !is_observing_in_eval_;
  if (is_observing_ && (is_training() || is_observing_in_eval_) && !has_learned) {
    if (relu)
      observer_->observe_relu(input.detach());
    else
      observer_->observe(input.detach());
    sync_buffers_from_observer();
    QuantParams params = observer_->calculate_qparams();
    QF_CHECK(static_cast<int64_t>(params.scale.size()) == channels_, "FakeQuantize: observer produced ",
             params.scale.size(), " scales, expected ", channels_);
    for (int64_t c = 0; c < channels_; ++c) {
      QF_CHECK(std::isfinite(params.scale[c]), "the observed range [", observer_buffers_[0].second.data()[0],
               ", ", observer_buffers_[1].second.data()[0],
               "] is not finite (the values it quantizes diverged)");
      scale_.data()[c] = params.scale[c];
      zero_point_.data()[c] = static_cast<float>(params.zero_point[c]);
    }
    if (spec_.is_learnable) is_initialized_.data()[0] = 1.0f;
  }
  if (!is_fake_quantizing_) return relu ? qforge::relu(input) : input;
  const QuantRange range = spec_.scheme.range();
  if (spec_.is_learnable) {
    for (int64_t c = 0; c < channels_; ++c)  // as PyTorch's _LearnableFakeQuantize: scale >= eps
      scale_.data()[c] = std::max(scale_.data()[c], std::numeric_limits<float>::epsilon());
    return fake_quantize_learnable(input, scale_, zero_point_, spec_.scheme.axis, range,
                                   lsq_gradient_scale(input.numel() / channels_, range), relu);
  }
  return fake_quantize(input, qparams(), range, relu);
}

bool FakeQuantize::can_reduce_statistics() const { return observer_->can_reduce(); }

void FakeQuantize::set_statistics_reducer(const StatisticsReducer* reducer) {
  QF_CHECK(reducer == nullptr || observer_->can_reduce(), path_, ": its ", observer_->name(),
           " observer cannot combine statistics across processes yet (minmax, moving_average, histogram "
           "and max can); train it in one process, or choose one of those");
  observer_->set_reducer(reducer);
}

}  // namespace qforge::quant
