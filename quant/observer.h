// Observers (PyTorch's torch.ao.quantization.observer, 1.13 semantics): watch the
// tensors flowing through a point of the network and turn what they saw into scale
// and zero point.
//   MinMax                    running min / max
//   MovingAverageMinMax       min/max averaged with constant c (0.01): m += c·(m_batch − m)
//   PerChannelMinMax          min / max per channel of `axis`
//   MovingAveragePerChannel   both
//   Histogram                 2048-bin running histogram; the range minimizing the L2
//                             quantization error (caffe2's NormMinimization search)
// The range always includes 0; scale is at least eps (FLT_EPSILON).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/serialize.h"
#include "core/tensor.h"
#include "quant/quant_params.h"

namespace qforge::quant {

// What a quantizer produces: bit width and sign of the integer type, symmetric or
// affine, per tensor (axis < 0) or per channel.
struct QuantScheme {
  int bits = 8;
  bool is_signed = false;
  bool symmetric = false;
  int64_t axis = -1;
  bool reduce_range = false;
  bool narrow_range = false;
  QuantRange range() const { return quant_range(bits, is_signed, reduce_range, narrow_range); }
  // PyTorch treats any range other than the 8-bit defaults as "customized": a symmetric
  // unsigned scheme then centres its zero point at (qmin+qmax)//2 instead of 128.
  bool has_customized_range() const { return bits != 8 || narrow_range; }
};

// PyTorch's _calculate_qparams for per-tensor (one entry) or per-channel min/max.
QuantParams qparams_from_min_max(const std::vector<float>& min_values, const std::vector<float>& max_values,
                                 const QuantScheme& scheme);

class Observer {
 public:
  explicit Observer(QuantScheme scheme) : scheme_(scheme) {}
  virtual ~Observer() = default;
  virtual void observe(const Tensor& x) = 0;
  virtual QuantParams calculate_qparams() const = 0;
  virtual std::string name() const = 0;
  // State for checkpoints (min/max, histogram) and its restoration.
  virtual TensorMap state() const = 0;
  virtual void load_state(const TensorMap& state) = 0;
  bool has_observed() const { return has_observed_; }
  const QuantScheme& scheme() const { return scheme_; }

 protected:
  QuantScheme scheme_;
  bool has_observed_ = false;
};

// MinMax and moving-average MinMax, per tensor or per channel (scheme.axis).
class MinMaxObserver : public Observer {
 public:
  // averaging_constant 0: plain running min/max; > 0: moving average.
  MinMaxObserver(QuantScheme scheme, float averaging_constant = 0.0f);
  void observe(const Tensor& x) override;
  QuantParams calculate_qparams() const override;
  std::string name() const override;
  TensorMap state() const override;
  void load_state(const TensorMap& state) override;
  const std::vector<float>& min_values() const { return min_; }
  const std::vector<float>& max_values() const { return max_; }

 private:
  float averaging_constant_;
  std::vector<float> min_, max_;
};

class HistogramObserver : public Observer {
 public:
  explicit HistogramObserver(QuantScheme scheme, int64_t bins = 2048, int64_t upsample_rate = 128);
  void observe(const Tensor& x) override;
  QuantParams calculate_qparams() const override;
  std::string name() const override { return "histogram"; }
  TensorMap state() const override;
  void load_state(const TensorMap& state) override;
  // The range the L2 search selects (before qparams), for tests and analysis.
  std::pair<float, float> search_range() const;

 private:
  double quantization_error(int64_t start_bin, int64_t end_bin) const;
  int64_t bins_, upsample_rate_;
  std::vector<float> histogram_;
  float min_ = 0, max_ = 0;
};

// "minmax", "moving_average" (constant 0.01), "histogram"; per channel when scheme.axis >= 0.
std::unique_ptr<Observer> make_observer(const std::string& kind, const QuantScheme& scheme);

}  // namespace qforge::quant
