#include "quant/calibrator.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <map>

#include "core/ops/reduce.h"

namespace qforge::quant {

namespace {
// The value a histogram part counts for x; negative when the part skips x.
float part_value(float x, HistogramPart part) {
  switch (part) {
    case HistogramPart::positive:
      return x > 0 ? x : -1.0f;
    case HistogramPart::negative:
      return x < 0 ? -x : -1.0f;
    case HistogramPart::magnitude:
      break;
  }
  return std::fabs(x);
}
}  // namespace

void AbsHistogram::collect(const Tensor& x, int64_t initial_bins, HistogramPart part) {
  const float* px = x.data();
  float batch_max = 0;
  for (int64_t i = 0; i < x.numel(); ++i) batch_max = std::max(batch_max, part_value(px[i], part));
  // A part this batch has no value of starts no histogram (its top stays 0: nothing to cover).
  if (part != HistogramPart::magnitude && batch_max == 0) return;
  if (edges.empty()) {  // torch.histc(|x|, bins, 0, max|x|)
    const float top = batch_max > 0 ? batch_max : 1.0f;
    counts.assign(initial_bins, 0.0);
    edges.resize(initial_bins + 1);
    for (int64_t b = 0; b <= initial_bins; ++b)
      edges[b] = top * static_cast<float>(b) / static_cast<float>(initial_bins);
  } else if (batch_max > edges.back()) {  // grow by whole bins of the same width
    const float width = edges[1] - edges[0];
    const int64_t bins = static_cast<int64_t>(std::ceil(batch_max / width));
    counts.resize(bins, 0.0);
    edges.resize(bins + 1);
    for (int64_t b = 0; b <= bins; ++b) edges[b] = width * static_cast<float>(b);
  }
  const int64_t bins = static_cast<int64_t>(counts.size());
  const float top = edges.back();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v = part_value(px[i], part);
    if (v < 0 || v > top) continue;
    int64_t b = static_cast<int64_t>(v * static_cast<float>(bins) / top);
    counts[std::min(b, bins - 1)] += 1;
  }
}

float percentile_amax(const AbsHistogram& h, double percentile) {
  QF_CHECK(percentile > 0 && percentile <= 100, "percentile calibrator: percentile must be in (0, 100], got ",
           percentile);
  double total = 0;
  for (double c : h.counts) total += c;
  double running = 0;
  for (std::size_t b = 0; b < h.counts.size(); ++b) {  // searchsorted(cdf, p/100): first cdf >= p
    running += h.counts[b];
    if (running / total >= percentile / 100) return h.edges[b];
  }
  return h.edges[h.counts.size() - 1];
}

float mse_amax(const AbsHistogram& h, int bits, bool is_unsigned, int64_t start_bin) {
  QF_CHECK(bits >= 2 && bits <= 16, "mse calibrator: bits must be in 2..16, got ", bits);
  const int64_t bins = static_cast<int64_t>(h.counts.size());
  const std::vector<double>& counts = h.counts;
  std::vector<float> centers(bins);
  for (int64_t b = 0; b < bins; ++b) centers[b] = (h.edges[b + 1] + h.edges[b]) / 2;
  // fake_quantize_amax of every bin centre at each candidate amax, inlined (no tensors,
  // selects instead of fmin/fmax) so the search vectorizes: it runs on every QAT batch.
  const float bound =
      is_unsigned ? static_cast<float>((1 << bits) - 1) : static_cast<float>((1 << (bits - 1)) - 1);
  const float lower = is_unsigned ? 0.0f : -bound;
  double best = INFINITY;
  int64_t best_bin = std::min(start_bin, bins - 1);
  for (int64_t i = std::min(start_bin, bins - 1); i < bins; ++i) {
    const float scale = bound / centers[i];
    double error = 0;
    for (int64_t b = 0; b < bins; ++b) {
      const float q = clamp_level(std::nearbyint(centers[b] * scale), lower, bound);
      const double d = q / scale - centers[b];
      error += d * d * counts[b];
    }
    error /= static_cast<double>(bins);
    if (error < best) best = error, best_bin = i;  // first minimum, as np.argmin
  }
  return centers[best_bin];
}

float entropy_amax(const AbsHistogram& h, int bits, bool is_unsigned, int64_t start_bin) {
  std::vector<double> counts = h.counts;
  const int64_t bins = static_cast<int64_t>(counts.size());
  if (bins > 1) counts[0] = counts[1];  // NVIDIA drops the spike of exact zeros
  const int64_t levels = int64_t{1} << (bits - 1 + (is_unsigned ? 1 : 0));
  double best = INFINITY;
  int64_t best_cut = std::min(start_bin, bins);
  std::vector<int64_t> bucket;
  std::vector<double> bucket_sum(levels), bucket_size(levels), candidate, reference;
  for (int64_t cut = std::min(start_bin, bins); cut <= bins; ++cut) {
    // Source bins [0, cut) merged into `levels` buckets (np.digitize over linspace(0, cut, levels+1));
    // empty source bins stay empty; each bucket's mass is spread evenly over its non-empty bins.
    bucket.assign(cut, -1);
    std::fill(bucket_sum.begin(), bucket_sum.end(), 0.0);
    std::fill(bucket_size.begin(), bucket_size.end(), 0.0);
    for (int64_t i = 0; i < cut; ++i) {
      if (counts[i] == 0) continue;
      int64_t k =
          static_cast<int64_t>(std::floor(static_cast<double>(i) * levels / static_cast<double>(cut)));
      // np.digitize(i, linspace(0, cut, levels+1)) - 1, with linspace's float edges
      while (k + 1 < levels && static_cast<double>(i) >= static_cast<double>(cut) * (k + 1) / levels) ++k;
      while (k > 0 && static_cast<double>(i) < static_cast<double>(cut) * k / levels) --k;
      bucket[i] = k;
      bucket_sum[k] += counts[i];
      bucket_size[k] += 1;
    }
    candidate.assign(cut, 0.0);
    double candidate_total = 0;
    for (int64_t i = 0; i < cut; ++i)
      if (bucket[i] >= 0) candidate_total += candidate[i] = bucket_sum[bucket[i]] / bucket_size[bucket[i]];
    reference.assign(counts.begin(), counts.begin() + cut);
    double outliers = 0;
    for (int64_t i = cut; i < bins; ++i) outliers += counts[i];
    if (cut > 0) reference[cut - 1] += outliers;
    double reference_total = 0;
    for (double r : reference) reference_total += r;
    if (candidate_total == 0 || reference_total == 0) continue;
    double divergence = 0;  // KL(reference || candidate), scipy.stats.entropy
    for (int64_t i = 0; i < cut; ++i) {
      const double p = reference[i] / reference_total, q = candidate[i] / candidate_total;
      if (p > 0) divergence += q > 0 ? p * std::log(p / q) : INFINITY;
    }
    if (divergence <= best) best = divergence, best_cut = cut;  // the last minimum, as NVIDIA
  }
  return h.edges[std::min<int64_t>(best_cut, bins)];
}

AffineRange affine_mse_range(const AbsHistogram& positive, const AbsHistogram& negative,
                             const QuantScheme& scheme, int64_t candidates, int64_t start) {
  const float top = std::max(positive.top(), negative.top());
  QF_CHECK(top > 0, "mse calibrator: no nonzero value collected");
  QF_CHECK(candidates > 0 && start >= 0 && start <= candidates, "mse calibrator: bad candidate range ", start,
           "..", candidates);
  const QuantRange range = scheme.range();
  const float quant_min = static_cast<float>(range.quant_min),
              quant_max = static_cast<float>(range.quant_max);
  struct Centres {
    std::vector<float> values;  // signed: the negative histogram's centres are negated
    const std::vector<double>* counts;
  };
  auto centres = [](const AbsHistogram& h, float sign) {
    Centres c{std::vector<float>(h.counts.size()), &h.counts};
    for (std::size_t b = 0; b < h.counts.size(); ++b) c.values[b] = sign * (h.edges[b] + h.edges[b + 1]) / 2;
    return c;
  };
  const Centres parts[2] = {centres(positive, 1.0f), centres(negative, -1.0f)};
  AffineRange best_range{-negative.top(), positive.top()};
  double best = INFINITY;
  for (int64_t k = std::max<int64_t>(start, 1); k <= candidates; ++k) {
    const float t = top * static_cast<float>(k) / static_cast<float>(candidates);
    const AffineRange candidate{-std::min(t, negative.top()), std::min(t, positive.top())};
    const QuantParams q = qparams_from_min_max({candidate.lo}, {candidate.hi}, scheme);
    const float scale = q.scale[0], inverse = 1.0f / scale, zero_point = static_cast<float>(q.zero_point[0]);
    double error = 0;
    for (const Centres& part : parts) {
      const std::vector<double>& counts = *part.counts;
      for (std::size_t b = 0; b < counts.size(); ++b) {
        const float x = part.values[b];
        const float level = clamp_level(quantize_unclamped(x, inverse, zero_point), quant_min, quant_max);
        const double d = dequantize_level(level, scale, zero_point) - x;
        error += d * d * counts[b];
      }
    }
    if (error < best) best = error, best_range = candidate;  // the first minimum
  }
  return best_range;
}

namespace {
// Σ (x − x̂)² over one channel's values for symmetric quantization with the given amax.
double channel_error(const float* x, int64_t outer, int64_t stride, int64_t inner, float amax,
                     const QuantRange& range) {
  const float scale = std::max(amax / static_cast<float>(range.quant_max), FLT_EPSILON),
              inverse = 1.0f / scale;
  const float lo = static_cast<float>(range.quant_min), hi = static_cast<float>(range.quant_max);
  double error = 0;
  for (int64_t o = 0; o < outer; ++o) {
    const float* row = x + o * stride;
    float row_error = 0;
    for (int64_t i = 0; i < inner; ++i) {
      const float level = clamp_level(quantize_unclamped(row[i], inverse, 0.0f), lo, hi);
      const float d = dequantize_level(level, scale, 0.0f) - row[i];
      row_error += d * d;
    }
    error += row_error;
  }
  return error;
}
}  // namespace

std::vector<float> channel_mse_amax(const Tensor& x, int64_t axis, const QuantRange& range) {
  AxisSplit s = axis >= 0 ? split_at_axis(x.shape(), axis) : AxisSplit{1, 1, x.numel()};
  QF_CHECK(range.quant_max > 0, "mse calibrator: the range has no positive levels");
  std::vector<float> amax(s.extent);
  const float* px = x.data();
#pragma omp parallel for schedule(dynamic)
  for (int64_t c = 0; c < s.extent; ++c) {
    const float* base = px + c * s.inner;
    const int64_t stride = s.extent * s.inner;
    float top = 0;
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i) top = std::max(top, std::fabs(base[o * stride + i]));
    if (top == 0) {
      amax[c] = 0;
      continue;
    }
    auto error = [&](float a) { return channel_error(base, s.outer, stride, s.inner, a, range); };
    constexpr int kCoarse = 64, kFine = 32;
    float best = top;
    double best_error = error(top);
    for (int k = 1; k < kCoarse; ++k) {
      const float a = top * static_cast<float>(k) / kCoarse;
      const double e = error(a);
      if (e < best_error) best_error = e, best = a;
    }
    const float step = top / kCoarse;
    constexpr int kHalf = kFine / 2;
    for (int k = -kHalf; k <= kHalf; ++k) {
      const float a = best + step * static_cast<float>(k) / static_cast<float>(kHalf);
      if (a <= 0 || a > top) continue;
      const double e = error(a);
      if (e < best_error) best_error = e, best = a;
    }
    amax[c] = best;
  }
  return amax;
}

CalibratorObserver::CalibratorObserver(QuantScheme scheme, ObserverKind method, double percentile,
                                       int64_t bins)
    : Observer(scheme), method_(method), percentile_(percentile), bins_(bins) {
  const ObserverKindInfo& info = observer_info(method_);
  QF_CHECK(info.is_calibrator, "calibrator: ", info.name,
           " is an observer, not a calibrator (calibrators: max, ", "percentile, mse, entropy)");
  QF_CHECK(info.allows_per_channel || scheme.axis < 0, "calibrator: ", info.name,
           " calibration is per tensor");
  QF_CHECK(scheme.is_signed || scheme.range().quant_min == 0, "calibrator: unsigned schemes start at 0");
}

void CalibratorObserver::observe(const Tensor& x) {
  if (x.numel() == 0) return;
  if (method_ == ObserverKind::mse && scheme_.axis >= 0) {  // per channel: searched on this tensor
    max_abs_ = channel_mse_amax(x, scheme_.axis, scheme_.range());
    has_observed_ = true;
    return;
  }
  if (is_affine()) {  // Note [Affine mse]
    histogram_.collect(x, bins_, HistogramPart::positive);
    negative_.collect(x, bins_, HistogramPart::negative);
    has_observed_ = true;
    return;
  }
  if (method_ != ObserverKind::max) {
    histogram_.collect(x, bins_);
    has_observed_ = true;
    return;
  }
  AxisSplit s = scheme_.axis >= 0 ? split_at_axis(x.shape(), scheme_.axis) : AxisSplit{1, 1, x.numel()};
  if (max_abs_.empty()) max_abs_.assign(s.extent, 0.0f);
  QF_CHECK(static_cast<int64_t>(max_abs_.size()) == s.extent, "calibrator: saw ", s.extent,
           " channels, expected ", max_abs_.size());
  const float* px = x.data();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t c = 0; c < s.extent; ++c)
      for (int64_t i = 0; i < s.inner; ++i)
        max_abs_[c] = std::max(max_abs_[c], std::fabs(px[(o * s.extent + c) * s.inner + i]));
  if (reducer_ != nullptr) reducer_->max(max_abs_);
  has_observed_ = true;
}

std::vector<float> CalibratorObserver::amax() const {
  QF_CHECK(has_observed_, "calibrator: no data collected");
  if (method_ == ObserverKind::max || scheme_.axis >= 0) return max_abs_;
  const bool is_unsigned = !scheme_.is_signed;
  if (method_ == ObserverKind::percentile) return {percentile_amax(histogram_, percentile_)};
  if (method_ == ObserverKind::mse) return {mse_amax(histogram_, scheme_.bits, is_unsigned)};
  return {entropy_amax(histogram_, scheme_.bits, is_unsigned)};
}

QuantParams CalibratorObserver::calculate_qparams() const {
  if (!has_observed_) return qparams_from_min_max({INFINITY}, {-INFINITY}, scheme_);
  if (is_affine()) {
    if (histogram_.top() == 0 && negative_.top() == 0)  // only zeros seen: PyTorch's range [0, 0]
      return qparams_from_min_max({0.0f}, {0.0f}, scheme_);
    const AffineRange range = affine_mse_range(histogram_, negative_, scheme_);
    return qparams_from_min_max({range.lo}, {range.hi}, scheme_);
  }
  return qparams_from_amax(amax(), scheme_);
}

TensorMap CalibratorObserver::state() const {
  if (!has_observed_) return {};
  if (method_ == ObserverKind::max || scheme_.axis >= 0)
    return {{"max", Tensor::from_vector({static_cast<int64_t>(max_abs_.size())}, max_abs_)}};
  auto save = [](TensorMap& state, const AbsHistogram& h, const std::string& prefix) {
    std::vector<float> counts(h.counts.begin(), h.counts.end());
    state[prefix + "histogram"] = Tensor::from_vector({static_cast<int64_t>(counts.size())}, counts);
    state[prefix + "edges"] = Tensor::from_vector({static_cast<int64_t>(h.edges.size())}, h.edges);
  };
  TensorMap state;
  save(state, histogram_, "");
  if (is_affine()) save(state, negative_, "negative_");
  return state;
}

void CalibratorObserver::load_state(const TensorMap& state) {
  has_observed_ = !state.empty();
  if (state.count("max")) max_abs_ = state.at("max").to_vector();
  auto load = [&](AbsHistogram& h, const std::string& prefix) {
    h = {};
    if (!state.count(prefix + "histogram")) return;
    std::vector<float> counts = state.at(prefix + "histogram").to_vector();
    h.counts.assign(counts.begin(), counts.end());
    h.edges = state.at(prefix + "edges").to_vector();
    QF_CHECK(h.edges.size() == h.counts.size() + 1 || (h.counts.empty() && h.edges.empty()),
             "calibrator: ", prefix, "histogram has ", h.counts.size(), " bins and ", h.edges.size(),
             " edges");
  };
  load(histogram_, "");
  load(negative_, "negative_");
}

}  // namespace qforge::quant
