// QConfig: how each layer is quantized, parsed from a config's "quant" section
// (PyTorch's QConfig / NVIDIA's QuantDescriptor). Default = the fbgemm recipe:
// weights int8 symmetric per-channel with MinMax, activations uint8 affine per-tensor
// with a moving-average MinMax. Overrides by module name (dotted, as in the float
// model; "input" for the network input, "output" for the network output) or by type
// ("Conv2d", "Linear", "LSTM", "BasicBlock") replace either half, or leave a layer "float".
//
// clang-format off
//   "quant": {
//     "mode": "static",             // or "dynamic" (Linear and LSTM, as quantize_dynamic)
//     "weight":     {"bits": 8, "signed": true, "symmetric": true, "per_channel": true,
//                    "observer": "minmax"},
//     "activation": {"bits": 8, "signed": false, "symmetric": false, "observer": "moving_average"},
//     "overrides":  [{"name": "0", "weight": {"bits": 4}}, {"type": "Linear", "float": true}],
//     ...                           // the stages' settings (qat, ptq, fp32_checkpoint): train/config.h
//   }
// clang-format on
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/config_reader.h"
#include "quant/observer.h"

namespace qforge::quant {

struct QuantizerSpec {
  QuantScheme scheme;
  // One of the registry's kinds (Note [Observer kinds], quant/observer.h).
  ObserverChoice observer;
  bool is_learnable = false;  // LSQ: scale and zero point are trained
};

struct QConfig {
  QuantizerSpec weight, activation;
  bool is_float = false;  // leave the layer unquantized
};

struct QConfigOverride {
  std::string name, type;  // one of them
  QConfig qconfig;
};

// The quantization spec: how each layer is quantized — what prepare_qat and convert read
// and what a saved model records (train/config.cpp's model_spec). The defaults are the
// fbgemm recipe: int8 symmetric per-channel MinMax weights, uint8 affine per-tensor
// moving-average activations.
struct QuantSpec {
  // static: QAT/PTQ then the integer model with fixed activation scales; dynamic: PyTorch's
  // quantize_dynamic on the fp32 model (Linear and LSTM; activation scales chosen per call).
  std::string mode = "static";
  QConfig defaults{.weight = {.scheme = {.bits = 8, .is_signed = true, .symmetric = true, .axis = 0},
                              .observer = {ObserverKind::minmax}},
                   .activation = {.scheme = {.bits = 8, .is_signed = false, .symmetric = false},
                                  .observer = {ObserverKind::moving_average}}};
  std::vector<QConfigOverride> overrides;
  // The QConfig for a module by dotted name and type; overrides apply in order.
  QConfig for_module(const std::string& name, const std::string& type) const;
  bool has_override(const std::string& name, const std::string& type) const;
};

// Reads the spec's keys of a config's "quant" section (mode, weight, activation, overrides);
// the caller reads the section's other keys (the stages' settings, train/config.h) and
// finishes it. Errors name "quant.<key>".
QuantSpec read_quant_spec(ConfigReader& section);
// A section that holds only the spec (an absent or null one gives the defaults).
QuantSpec parse_quant_spec(const nlohmann::json& section, const std::string& file);

}  // namespace qforge::quant
