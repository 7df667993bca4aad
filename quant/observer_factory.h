// make_observer: the observer or calibrator for a config's choice (Note [Observer kinds],
// quant/observer.h). Its own file, above both families, so that observers and calibrators
// include only what they build on.
#pragma once

#include <memory>
#include <string>

#include "quant/calibrator.h"
#include "quant/observer.h"

namespace qforge::quant {

// The observer for a choice; per channel when scheme.axis >= 0.
std::unique_ptr<Observer> make_observer(const ObserverChoice& choice, const QuantScheme& scheme);
inline std::unique_ptr<Observer> make_observer(const std::string& text, const QuantScheme& scheme) {
  return make_observer(ObserverChoice::parse(text), scheme);
}

}  // namespace qforge::quant
