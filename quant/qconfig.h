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
//     "qat": {"epochs": 1, "lr": 0.0005, "freeze_observers_epoch": -1, "freeze_bn_epoch": -1,
//             "calibration_batches": 0,
//             "distillation": {"weight": 0.5, "temperature": 4}},
//     "ptq": {"calibration_batches": 32},
//     "fp32_checkpoint": "runs/lenet/model.qf"
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
// and what a saved model records (train/config.cpp's model_spec).
struct QuantSpec {
  // static: QAT/PTQ then the integer model with fixed activation scales; dynamic: PyTorch's
  // quantize_dynamic on the fp32 model (Linear and LSTM; activation scales chosen per call).
  std::string mode = "static";
  QConfig defaults;
  std::vector<QConfigOverride> overrides;
  // The QConfig for a module by dotted name and type; overrides apply in order.
  QConfig for_module(const std::string& name, const std::string& type) const;
  bool has_override(const std::string& name, const std::string& type) const;
};

// Run settings of the QAT stage (train/quantize_runs.cpp): not part of the model.
struct QatSettings {
  int64_t epochs = 0;                   // 0: 10% of the fp32 epochs, at least 1
  double lr = 0;                        // 0: 1% of the fp32 learning rate
  int64_t freeze_observers_epoch = -1;  // -1: never
  int64_t freeze_bn_epoch = -1;         // -1: never
  int64_t calibration_batches = 0;      // calibrate on this many batches before QAT
  // Knowledge distillation from the fp32 model: loss = (1−w)·CE + w·KD(T).
  double distillation_weight = 0;  // 0: off
  double distillation_temperature = 4;
};

// Run settings of the PTQ stage.
struct PtqSettings {
  int64_t calibration_batches = 32;
};

// The whole "quant" section: the spec, and apart from it how the stages run.
struct QuantConfig : QuantSpec {
  QatSettings qat;
  PtqSettings ptq;
  std::string fp32_checkpoint;  // empty: train fp32 first
};

// An absent or null section gives the defaults; errors name "quant.<key>".
QuantConfig parse_quant_config(const nlohmann::json& section, const std::string& file);

}  // namespace qforge::quant
