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
#pragma once

#include <string>
#include <vector>

#include "quant/observer.h"

namespace qforge::quant {

// |x| histogram over [0, edges.back()], bins of equal width.
struct AbsHistogram {
  std::vector<double> counts;
  std::vector<float> edges;  // counts.size() + 1
  void collect(const Tensor& x, int64_t initial_bins);
};

// amax from a histogram (exposed for tests and analysis).
float percentile_amax(const AbsHistogram& histogram, double percentile);
float mse_amax(const AbsHistogram& histogram, int bits, bool is_unsigned, int64_t start_bin = 128);
float entropy_amax(const AbsHistogram& histogram, int bits, bool is_unsigned, int64_t start_bin = 128);
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
  std::vector<float> max_abs_;  // max: running max|x|; per-channel mse: the last search's amax
  AbsHistogram histogram_;
};

}  // namespace qforge::quant
