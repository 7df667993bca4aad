// Calibrators with NVIDIA pytorch-quantization semantics (calib/max.py, calib/histogram.py):
// they find amax, the magnitude that maps to the largest integer level, for a symmetric
// quantizer.
//   max         amax = max |x| seen (per tensor or per channel)
//   percentile  the histogram edge where the CDF of |x| reaches p% (e.g. 99.99)
//   mse         the histogram-bin centre (from bin 128 on) whose fake quantization of the
//               histogram has the least count-weighted squared error
//   entropy     the cut (from bin 128 on) minimizing the KL divergence between the clipped
//               reference histogram and its quantized version (TensorRT's calibration)
// The three histogram methods share one collector: 2048 bins of |x| over [0, amax], which
// grows by whole bins of the same width when a larger value arrives.
// mse per channel (weights; an extension — NVIDIA's is per tensor only) searches each
// channel's values directly: the amax minimizing Σ (x − fq(x))² over the most recently
// observed tensor (channel_mse_amax). At 4 bits it clips most channels well below max|x|.
// A Calibrator is an Observer, so every quantizer can name one ("calibrator" kinds);
// the parameters it produces are symmetric: scale = amax/qmax, zero point 0 (signed) or
// scale = amax/qmax over 0..qmax (unsigned).
//
// Note [Affine mse]
// mse with "symmetric": false (per tensor; an extension — NVIDIA's calibrators are symmetric)
// searches an affine range instead. A symmetric signed grid spends half its levels on
// negative values a ReLU's output never has, and a symmetric unsigned one clips every
// negative value of a tensor that has them (a normalized image, a conv output before a
// residual add); at 4 bits either costs a whole bit. The affine search keeps two histograms,
// of the positive values and of the magnitudes of the negative ones (exact zeros need no
// bin: 0 is on every affine grid), and tries clip magnitudes t from M/16 to M in 2048 equal
// steps (M the largest magnitude seen, the symmetric search's candidates). Each t clips both
// sides at t, lo = −min(t, max⁻), hi = min(t, max⁺), takes PyTorch's affine parameters for
// [lo, hi] (qparams_from_min_max), and is scored by the count-weighted squared error of
// fake-quantizing every bin centre with them; the first least error wins. A ReLU output (no
// negative value) gets zero point qmin and all 2^b levels on [0, t].
#pragma once

#include <string>
#include <vector>

#include "quant/observer.h"

namespace qforge::quant {

// |x| histogram over [0, edges.back()], bins of equal width; `part` collects only the
// positive values, or only the magnitudes of the negative ones (Note [Affine mse]).
enum class HistogramPart { magnitude, positive, negative };
struct AbsHistogram {
  std::vector<double> counts;
  std::vector<float> edges;  // counts.size() + 1
  void collect(const Tensor& x, int64_t initial_bins, HistogramPart part = HistogramPart::magnitude);
  float top() const { return edges.empty() ? 0.0f : edges.back(); }
};

// amax from a histogram (exposed for tests and analysis).
float percentile_amax(const AbsHistogram& histogram, double percentile);
float mse_amax(const AbsHistogram& histogram, int bits, bool is_unsigned, int64_t start_bin = 128);
float entropy_amax(const AbsHistogram& histogram, int bits, bool is_unsigned, int64_t start_bin = 128);
// Note [Affine mse]: the range [lo, hi] (lo <= 0 <= hi) for an affine scheme, from the
// histograms of the positive values and of the negative values' magnitudes (either may be
// empty, not both).
struct AffineRange {
  float lo = 0, hi = 0;
};
AffineRange affine_mse_range(const AbsHistogram& positive, const AbsHistogram& negative,
                             const QuantScheme& scheme, int64_t candidates = 2048, int64_t start = 128);
// Per channel of `axis`: the amax in (0, max|x|] minimizing the squared error of symmetric
// quantization with scale amax/qmax over `range` — a grid of 64 candidates from max|x|/64
// to max|x|, then 32 finer ones around the best.
std::vector<float> channel_mse_amax(const Tensor& x, int64_t axis, const QuantRange& range);

class CalibratorObserver : public Observer {
 public:
  // method: a calibrator kind of the registry (max, percentile, mse, entropy)
  CalibratorObserver(QuantScheme scheme, ObserverKind method, double percentile = 99.99,
                     int64_t bins = kHistogramBins);
  void observe(const Tensor& x) override;
  QuantParams calculate_qparams() const override;
  std::string name() const override { return observer_info(method_).name; }
  TensorMap state() const override;
  void load_state(const TensorMap& state) override;
  std::vector<float> amax() const;
  // max reduces (a running max of maxima); the histogram calibrators do not yet.
  bool can_reduce() const override { return method_ == ObserverKind::max; }

 private:
  ObserverKind method_;
  double percentile_;
  int64_t bins_;
  bool is_affine() const { return method_ == ObserverKind::mse && !scheme_.symmetric; }
  std::vector<float> max_abs_;  // max: running max|x|; per-channel mse: the last search's amax
  AbsHistogram histogram_;      // affine mse: the positive values
  AbsHistogram negative_;       // affine mse: the negative values' magnitudes
};

}  // namespace qforge::quant
