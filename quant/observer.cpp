#include "quant/observer.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/threading.h"

namespace qforge::quant {

// ---- MinMax / moving average, per tensor or per channel ------------------------

namespace {

// lo = min(lo, x[0..n)), hi = max(hi, x[0..n)), in 16 lanes so the compiler vectorizes it
// (a float min/max reduction does not vectorize without fast-math). A NaN is skipped, as
// std::min(lo, x) skips it. The minimum and maximum are exact, so the lanes change nothing.
// kRelu: of relu(x), each element read as the relu op computes it (relu_value).
template <bool kRelu>
void min_max_run(const float* x, int64_t n, float& lo, float& hi) {
  constexpr int kLanes = 16;
  auto value = [x](int64_t i) { return kRelu ? relu_value(x[i]) : x[i]; };
  float lane_lo[kLanes], lane_hi[kLanes];
  for (int j = 0; j < kLanes; ++j) lane_lo[j] = lo, lane_hi[j] = hi;
  const int64_t whole = n - n % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const float v = value(i + j);
      lane_lo[j] = v < lane_lo[j] ? v : lane_lo[j];
      lane_hi[j] = v > lane_hi[j] ? v : lane_hi[j];
    }
  for (int64_t i = whole; i < n; ++i) lo = std::min(lo, value(i)), hi = std::max(hi, value(i));
  for (int j = 0; j < kLanes; ++j) lo = std::min(lo, lane_lo[j]), hi = std::max(hi, lane_hi[j]);
}

}  // namespace

MinMaxObserver::MinMaxObserver(QuantScheme scheme, float averaging_constant)
    : Observer(scheme), averaging_constant_(averaging_constant) {
  QF_CHECK(averaging_constant >= 0 && averaging_constant <= 1,
           "observer: averaging constant must be in [0, 1], got ", averaging_constant);
}

std::string MinMaxObserver::name() const {
  return std::string(averaging_constant_ > 0 ? "moving_average" : "minmax") +
         (scheme_.axis >= 0 ? "_per_channel" : "");
}

void Observer::observe_relu(const Tensor& x) { observe(relu(x.detach())); }

void MinMaxObserver::observe(const Tensor& x) { observe_values<false>(x); }

void MinMaxObserver::observe_relu(const Tensor& x) { observe_values<true>(x); }

template <bool kRelu>
void MinMaxObserver::observe_values(const Tensor& x) {
  if (x.numel() == 0) return;
  AxisSplit s{1, 1, x.numel()};
  if (scheme_.axis >= 0) {
    QF_CHECK(scheme_.axis < x.dim(), "observer: channel axis ", scheme_.axis, " out of range for ",
             x.shape());
    s = split_at_axis(x.shape(), scheme_.axis);
  }
  std::vector<float> batch_min(s.extent, std::numeric_limits<float>::infinity()),
      batch_max(s.extent, -std::numeric_limits<float>::infinity());
  const float* px = x.data();
  if (s.outer * s.extent == 1) {  // per tensor: one reduction, split across threads
    float lo = batch_min[0], hi = batch_max[0];
    const int64_t n = s.inner, block = 1 << 14;
#pragma omp parallel for reduction(min : lo) reduction(max : hi) schedule(static) if (n >= kParallelGrain)
    for (int64_t start = 0; start < n; start += block)
      min_max_run<kRelu>(px + start, std::min(block, n - start), lo, hi);
    batch_min[0] = lo, batch_max[0] = hi;
  } else {
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t c = 0; c < s.extent; ++c) {
        const float* row = px + (o * s.extent + c) * s.inner;
        min_max_run<kRelu>(row, s.inner, batch_min[c], batch_max[c]);
      }
  }
  if (reducer_ != nullptr) reducer_->min(batch_min), reducer_->max(batch_max);
  if (!has_observed_) {
    min_ = batch_min, max_ = batch_max;
  } else {
    QF_CHECK(min_.size() == batch_min.size(), "observer: saw ", batch_min.size(), " channels, expected ",
             min_.size());
    for (int64_t c = 0; c < s.extent; ++c) {
      if (averaging_constant_ > 0) {
        min_[c] = min_[c] + averaging_constant_ * (batch_min[c] - min_[c]);
        max_[c] = max_[c] + averaging_constant_ * (batch_max[c] - max_[c]);
      } else {
        min_[c] = std::min(min_[c], batch_min[c]);
        max_[c] = std::max(max_[c], batch_max[c]);
      }
    }
  }
  has_observed_ = true;
}

QuantParams MinMaxObserver::calculate_qparams() const {
  if (!has_observed_) return qparams_from_min_max({INFINITY}, {-INFINITY}, scheme_);
  return qparams_from_min_max(min_, max_, scheme_);
}

TensorMap MinMaxObserver::state() const {
  if (!has_observed_) return {};
  const Shape shape{static_cast<int64_t>(min_.size())};
  return {{"min", Tensor::from_vector(shape, min_)}, {"max", Tensor::from_vector(shape, max_)}};
}

void MinMaxObserver::load_state(const TensorMap& state) {
  has_observed_ = state.count("min") && state.count("max");
  if (has_observed_) min_ = state.at("min").to_vector(), max_ = state.at("max").to_vector();
}

// ---- Histogram ---------------------------------------------------------------------
//
// Note [PyTorch 1.13 histogram quirks]: to give PyTorch's numbers, this follows
// HistogramObserver line by line, including two behaviours that look like accidents:
// the histogram range passed to torch.histc is int(min), int(max) — truncated toward
// zero — so values outside that integer range are not counted, while min/max keep the
// true extremes; and the search arithmetic mixes float32 tensors with double scalars.

namespace {

// torch.histc(x, bins, min, max): equal bins over [min, max] (the data's extremes when
// min == max; widened by 1 when still equal), values outside skipped, the right edge
// in the last bin. Float arithmetic, as ATen's linear-interpolation kernel. The data's
// extremes are passed in: a batch split over processes has the whole batch's, not this
// part's (each part binned over its own range would add up to nothing meaningful).
std::vector<float> histc(const Tensor& x, int64_t bins, float left, float right, float data_min,
                         float data_max) {
  if (left == right) left = data_min, right = data_max;
  if (left == right) left -= 1, right += 1;
  std::vector<float> counts(bins, 0.0f);
  const float* px = x.data();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v = px[i];
    if (v < left || right < v) continue;
    int64_t position = static_cast<int64_t>((v - left) * static_cast<float>(bins) / (right - left));
    if (position == bins) position -= 1;
    counts[position] += 1.0f;
  }
  return counts;
}

float truncate_toward_zero(float v) { return static_cast<float>(static_cast<int64_t>(v)); }

}  // namespace

HistogramObserver::HistogramObserver(QuantScheme scheme, int64_t bins, int64_t upsample_rate)
    : Observer(scheme), bins_(bins), upsample_rate_(upsample_rate), histogram_(bins, 0.0f) {
  QF_CHECK(scheme.axis < 0, "histogram observer: per-channel histograms are not supported (as in PyTorch)");
  QF_CHECK(bins >= 2 && upsample_rate >= 1, "histogram observer: need at least 2 bins");
}

void HistogramObserver::observe(const Tensor& x) {
  if (x.numel() == 0) return;
  const float* px = x.data();
  const auto [lo_it, hi_it] = std::minmax_element(px, px + x.numel());
  std::vector<float> batch_mins{*lo_it}, batch_maxs{*hi_it};
  if (reducer_ != nullptr) reducer_->min(batch_mins), reducer_->max(batch_maxs);
  const float batch_min = batch_mins[0], batch_max = batch_maxs[0];
  // Counts over a range every process shares add up to the whole batch's.
  auto histogram_of_batch = [&](float lo, float hi) {
    std::vector<float> counts =
        histc(x, bins_, truncate_toward_zero(lo), truncate_toward_zero(hi), batch_min, batch_max);
    if (reducer_ != nullptr) reducer_->sum(counts);
    return counts;
  };
  if (!has_observed_ || min_ == max_) {
    min_ = batch_min, max_ = batch_max;
    histogram_ = histogram_of_batch(min_, max_);
    has_observed_ = true;
    return;
  }
  float combined_min = std::min(batch_min, min_), combined_max = std::max(batch_max, max_);
  // _adjust_min_max: widen the combined range to a whole number of old bins.
  const float histogram_bin_width = (max_ - min_) / static_cast<float>(bins_ * upsample_rate_);
  const int64_t downsample_rate = static_cast<int64_t>(
      std::ceil((combined_max - combined_min) / (static_cast<float>(bins_) * histogram_bin_width)));
  const float e = static_cast<float>(downsample_rate) * (static_cast<float>(bins_) * histogram_bin_width) -
                  (combined_max - combined_min);
  combined_max = combined_max + e;
  const int64_t start_index =
      static_cast<int64_t>(std::nearbyint((min_ - combined_min) / histogram_bin_width));
  std::vector<float> combined = histogram_of_batch(combined_min, combined_max);
  if (combined_min == min_ && combined_max == max_) {
    for (int64_t b = 0; b < bins_; ++b) combined[b] += histogram_[b];
  } else {
    // _combine_histograms: upsample the old histogram, place it in the new range,
    // integrate in double and resample to `bins_`.
    std::vector<double> placed(bins_ * downsample_rate, 0.0);
    for (int64_t i = 0; i < bins_ * upsample_rate_; ++i) {
      const int64_t at = start_index + i;
      if (at >= 0 && at < static_cast<int64_t>(placed.size())) placed[at] = histogram_[i / upsample_rate_];
    }
    double running = 0, previous = 0;
    int64_t out = 0;
    for (std::size_t i = 0; i < placed.size(); ++i) {
      running += placed[i];
      if (static_cast<int64_t>(i) % downsample_rate == downsample_rate - 1) {
        combined[out++] += static_cast<float>((running - previous) / static_cast<double>(upsample_rate_));
        previous = running;
      }
    }
  }
  histogram_ = std::move(combined);
  min_ = combined_min, max_ = combined_max;
}

double HistogramObserver::quantization_error(int64_t start_bin, int64_t end_bin) const {
  const double bin_width = (static_cast<double>(max_) - static_cast<double>(min_)) / bins_;
  const int64_t destination_bins = int64_t{1} << scheme_.bits;
  const double destination_width = bin_width * (end_bin - start_bin + 1) / destination_bins;
  if (destination_width == 0.0) return 0.0;
  const float dst_width = static_cast<float>(destination_width),
              half = static_cast<float>(destination_width / 2);
  auto norm_of = [](float begin, float end, float density) {
    return density * ((end * end * end - begin * begin * begin) / 3);
  };
  double total = 0;
  for (int64_t b = 0; b < bins_; ++b) {
    const float begin = static_cast<float>(b - start_bin) * static_cast<float>(bin_width);
    const float end = begin + static_cast<float>(bin_width);
    const float dst_begin =
        std::clamp(std::floor(begin / dst_width), 0.0f, static_cast<float>(destination_bins - 1));
    const float dst_end =
        std::clamp(std::floor(end / dst_width), 0.0f, static_cast<float>(destination_bins - 1));
    const float density = histogram_[b] / static_cast<float>(bin_width);
    const float begin_center = (dst_begin + 0.5f) * dst_width;
    float norm = norm_of(begin - begin_center, half, density);
    norm += (dst_end - dst_begin - 1) * norm_of(-half, half, density);
    const float end_center = dst_end * dst_width + half;
    norm += norm_of(-half, end - end_center, density);
    total += norm;
  }
  return total;
}

std::pair<float, float> HistogramObserver::search_range() const {
  const float bin_width = (max_ - min_) / static_cast<float>(bins_);
  double total = 0;
  std::vector<float> cumulative(bins_);
  float running = 0;
  for (int64_t b = 0; b < bins_; ++b) total += histogram_[b], cumulative[b] = (running += histogram_[b]);
  const double step = 1e-5;
  double alpha = 0.0, beta = 1.0, norm_min = std::numeric_limits<double>::infinity();
  int64_t start_bin = 0, end_bin = bins_ - 1;
  while (alpha < beta) {
    const double next_alpha = alpha + step, next_beta = beta - step;
    int64_t l = start_bin, r = end_bin;
    while (l < end_bin && cumulative[l] < static_cast<float>(next_alpha * total)) ++l;
    while (r > start_bin && cumulative[r] > static_cast<float>(next_beta * total)) --r;
    int64_t next_start = start_bin, next_end = end_bin;
    if ((l - start_bin) > (end_bin - r)) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start_bin && next_end == end_bin) continue;
    const double norm = quantization_error(next_start, next_end);
    if (norm > norm_min) break;
    norm_min = norm;
    start_bin = next_start, end_bin = next_end;
  }
  return {min_ + bin_width * static_cast<float>(start_bin),
          min_ + bin_width * static_cast<float>(end_bin + 1)};
}

QuantParams HistogramObserver::calculate_qparams() const {
  if (!has_observed_) return qparams_from_min_max({INFINITY}, {-INFINITY}, scheme_);
  auto [lo, hi] = search_range();
  return qparams_from_min_max({lo}, {hi}, scheme_);
}

TensorMap HistogramObserver::state() const {
  if (!has_observed_) return {};
  return {{"histogram", Tensor::from_vector({bins_}, histogram_)},
          {"min", Tensor::from_vector({1}, {min_})},
          {"max", Tensor::from_vector({1}, {max_})}};
}

void HistogramObserver::load_state(const TensorMap& state) {
  has_observed_ = state.count("histogram") > 0;
  if (!has_observed_) return;
  QF_CHECK(state.at("histogram").numel() == bins_, "histogram observer: state has ",
           state.at("histogram").numel(), " bins, expected ", bins_);
  histogram_ = state.at("histogram").to_vector();
  min_ = state.at("min").item(), max_ = state.at("max").item();
}

// ---- the registry ---------------------------------------------------------------

const std::vector<ObserverKindInfo>& observer_kinds() {
  //                                  name              calibrator histogram per-channel
  static const std::vector<ObserverKindInfo> kinds{
      {ObserverKind::minmax, "minmax", false, false, true},
      {ObserverKind::moving_average, "moving_average", false, false, true},
      {ObserverKind::histogram, "histogram", false, true, false},
      {ObserverKind::max, "max", true, false, true},
      {ObserverKind::percentile, "percentile", true, true, false},
      {ObserverKind::mse, "mse", true, true, true},  // per channel: searched per tensor seen
      {ObserverKind::entropy, "entropy", true, true, false},
  };
  return kinds;
}

const ObserverKindInfo& observer_info(ObserverKind kind) {
  for (const ObserverKindInfo& info : observer_kinds())
    if (info.kind == kind) return info;
  QF_FAIL("observer: kind ", static_cast<int>(kind), " missing from the registry");
}

std::optional<ObserverKind> observer_kind_named(std::string_view name) {
  for (const ObserverKindInfo& info : observer_kinds())
    if (name == info.name) return info.kind;
  return std::nullopt;
}

std::string observer_kind_names() {
  std::string names;
  for (const ObserverKindInfo& info : observer_kinds())
    names += (names.empty() ? "" : ", ") + std::string(info.name);
  return names;
}

std::string ObserverChoice::to_string() const {
  const std::string name = observer_info(kind).name;
  return kind == ObserverKind::percentile ? name + ":" + std::to_string(percentile) : name;
}

ObserverChoice ObserverChoice::parse(const std::string& text) {
  const std::size_t colon = text.find(':');
  const std::optional<ObserverKind> kind = observer_kind_named(text.substr(0, colon));
  QF_CHECK(kind && (colon == std::string::npos || *kind == ObserverKind::percentile),
           "observer: unknown kind \"", text, "\" (known: ", observer_kind_names(),
           "; percentile:P for another percentile)");
  ObserverChoice choice{*kind};
  if (colon != std::string::npos) {
    char* end = nullptr;
    choice.percentile = std::strtod(text.c_str() + colon + 1, &end);
    QF_CHECK(
        end != text.c_str() + colon + 1 && *end == '\0' && choice.percentile > 0 && choice.percentile <= 100,
        "observer: \"", text, "\": expected percentile:P with P in (0, 100]");
  }
  return choice;
}

}  // namespace qforge::quant
