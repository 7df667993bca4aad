#include "quant/observer_factory.h"

namespace qforge::quant {

std::unique_ptr<Observer> make_observer(const ObserverChoice& choice, const QuantScheme& scheme) {
  switch (choice.kind) {
    case ObserverKind::minmax:
      return std::make_unique<MinMaxObserver>(scheme, 0.0f);
    case ObserverKind::moving_average:
      return std::make_unique<MinMaxObserver>(scheme, 0.01f);
    case ObserverKind::histogram:
      return std::make_unique<HistogramObserver>(scheme);
    case ObserverKind::max:
    case ObserverKind::percentile:
    case ObserverKind::mse:
    case ObserverKind::entropy:
      return std::make_unique<CalibratorObserver>(scheme, choice.kind, choice.percentile);
  }
  QF_FAIL("observer: unknown kind");
}

}  // namespace qforge::quant
