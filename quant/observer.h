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
// NVIDIA's calibrators (max, percentile, mse, entropy) are observers too
// (quant/calibrator.h). Every kind a config can name is in one registry below;
// quant/observer_factory.h builds any of them
// (Note [Observer kinds]); the range -> scale/zero-point step is quant/quant_params.h's.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/serialize.h"
#include "core/tensor.h"
#include "quant/quant_params.h"

namespace qforge::quant {

// PyTorch's HistogramObserver bins (and the calibrators' initial histogram).
inline constexpr int64_t kHistogramBins = 2048;

// Data parallelism (Note [Data parallelism], train/distributed.h): where one model trains
// on several processes, each seeing part of every batch, an observer combines the batch's
// statistics across them before taking them in — the batch's min and max as min and max,
// a histogram as a sum of counts over the combined range — so every process computes the
// scale and zero point one process would compute from the whole batch.
class StatisticsReducer {
 public:
  virtual ~StatisticsReducer() = default;
  virtual void min(std::vector<float>& values) const = 0;  // elementwise, across the processes
  virtual void max(std::vector<float>& values) const = 0;
  virtual void sum(std::vector<float>& values) const = 0;
};

class Observer {
 public:
  explicit Observer(QuantScheme scheme) : scheme_(scheme) {}
  virtual ~Observer() = default;
  virtual void observe(const Tensor& x) = 0;
  // observe(relu(x)): what a quantizer with the ReLU fused in observes (FakeQuantize::
  // forward_relu). By default through a relu'd copy; an observer that can apply it on the
  // fly, exactly, overrides it.
  virtual void observe_relu(const Tensor& x);
  virtual QuantParams calculate_qparams() const = 0;
  virtual std::string name() const = 0;
  // State for checkpoints (min/max, histogram) and its restoration.
  virtual TensorMap state() const = 0;
  virtual void load_state(const TensorMap& state) = 0;
  bool has_observed() const { return has_observed_; }
  const QuantScheme& scheme() const { return scheme_; }
  // Null: this process alone. Every process must then observe the same tensors in the same
  // order, none of them empty.
  void set_reducer(const StatisticsReducer* reducer) { reducer_ = reducer; }
  // Whether it can combine its statistics across processes (false: reducer refused).
  virtual bool can_reduce() const { return true; }

 protected:
  QuantScheme scheme_;
  bool has_observed_ = false;
  const StatisticsReducer* reducer_ = nullptr;
};

// MinMax and moving-average MinMax, per tensor or per channel (scheme.axis).
class MinMaxObserver : public Observer {
 public:
  // averaging_constant 0: plain running min/max; > 0: moving average.
  MinMaxObserver(QuantScheme scheme, float averaging_constant = 0.0f);
  void observe(const Tensor& x) override;
  void observe_relu(const Tensor& x) override;  // relu applied as each element is read
  QuantParams calculate_qparams() const override;
  std::string name() const override;
  TensorMap state() const override;
  void load_state(const TensorMap& state) override;
  const std::vector<float>& min_values() const { return min_; }
  const std::vector<float>& max_values() const { return max_; }

 private:
  template <bool kRelu>
  void observe_values(const Tensor& x);
  float averaging_constant_;
  std::vector<float> min_, max_;
};

class HistogramObserver : public Observer {
 public:
  explicit HistogramObserver(QuantScheme scheme, int64_t bins = kHistogramBins, int64_t upsample_rate = 128);
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

// Note [Observer kinds]: the one registry of what a config's "observer" may name.
enum class ObserverKind { minmax, moving_average, histogram, max, percentile, mse, entropy };

struct ObserverKindInfo {
  ObserverKind kind;
  const char* name;         // as written in configs and saved specs
  bool is_calibrator;       // NVIDIA's amax convention: symmetric (mse also affine: Note [Affine mse])
  bool keeps_histogram;     // a per-tensor histogram in the observer state
  bool allows_per_channel;  // weights per channel
};
const std::vector<ObserverKindInfo>& observer_kinds();
const ObserverKindInfo& observer_info(ObserverKind kind);
std::optional<ObserverKind> observer_kind_named(std::string_view name);
std::string observer_kind_names();  // "minmax, moving_average, ...", for messages

// A chosen observer: its kind and, for percentile, the percentile.
struct ObserverChoice {
  ObserverKind kind = ObserverKind::minmax;
  double percentile = 99.99;
  // "minmax", ..., "percentile:99.990000" (as saved in model specs) and back; parse
  // accepts "percentile" alone (99.99) and fails naming the known kinds.
  std::string to_string() const;
  static ObserverChoice parse(const std::string& text);
  bool operator==(const ObserverChoice&) const = default;
};

}  // namespace qforge::quant
