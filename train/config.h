// The run configuration: what a JSON config file may say, with defaults. Parsed once,
// strictly (core/config_reader.h), into these structs when the config loads: unknown keys
// and wrong types are errors naming the key path, and nothing downstream reads the JSON
// again. Sections: data, model, train, quant (the spec, quant/qconfig.h, and the stages'
// settings below), output, and the studies' (train/study_config.h).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/data_loader.h"
#include "data/dataset.h"
#include "nn/module.h"
#include "quant/adaround.h"
#include "quant/qconfig.h"
#include "train/study_config.h"

namespace qforge::train {

struct DataConfig {
  std::string dataset = "fashion-mnist";  // fashion-mnist | mnist-digits | idx
  std::string path;                       // folder; defaults per dataset
  data::Normalization normalization{0.2860f, 0.3530f};
  data::Augmentation augmentation;
  int64_t train_limit = 0, test_limit = 0;  // 0 = all samples
};

struct ModelConfig {
  std::string name;       // a zoo model, or empty when `layers` is given
  nlohmann::json layers;  // a Sequential from a layer list
};

struct OptimizerConfig {
  std::string type = "sgd";  // sgd | adam
  double lr = 0.05, momentum = 0.9, weight_decay = 0.0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

struct ScheduleConfig {
  std::string type = "cosine";  // none | step | cosine
  double warmup_epochs = 0.0;
  int64_t step_size = 1;  // step: epochs between decays
  double gamma = 0.1;     // step: decay factor
  double min_lr = 0.0;    // cosine: final learning rate
};

struct TrainConfig {
  // eval_batch_size: evaluation and the integer model's comparison run this many images per
  // forward. 64 keeps a batch's activations in cache between layers; 256 did not, and was
  // slower on every zoo model (a PTQ run: jermmy 0.67 -> 0.52 s, lenet 4.44 -> 4.04 s,
  // resnet8 6.81 -> 5.76 s; AMD EPYC, 2 threads).
  int64_t epochs = 5, batch_size = 64, eval_batch_size = 64;
  uint64_t seed = 0;
  int64_t threads = 0;  // 0 = QFORGE_THREADS or every core
  double label_smoothing = 0.0;
  // Data parallelism: batch norms normalize with the whole batch's statistics, summed over
  // the ranks (SyncBatchNorm), instead of each rank's rows (train/distributed.h).
  bool sync_batchnorm = false;
  // Data parallelism: the gradients are summed in buckets of this many MiB, each started
  // during backward as soon as its gradients are final (Note [Overlapped allreduce]).
  double allreduce_bucket_mb = 1.0;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
};

// How the QAT stage runs (train/stages.cpp): not part of the model.
//   "qat": {"epochs": 1, "lr": 0.0005, "freeze_observers_epoch": -1, "freeze_bn_epoch": -1,
//           "calibration_batches": 0, "distillation": {"weight": 0.5, "temperature": 4}}
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

// How the PTQ stage runs: "ptq": {"calibration_batches": 32, "equalize": false,
// "high_bias_absorption": false, "bias_correction": false, "adaround": false}.
struct PtqSettings {
  int64_t calibration_batches = 32;
  // Cross-layer equalization of the float model before prepare (Note [Cross-layer
  // equalization], quant/equalize.h).
  bool equalize = false;
  // High-bias absorption after it (DFQ §4.1.1, quant/equalize.h): batch-norm biases past 3σ
  // move through the ReLU into the next layer.
  bool high_bias_absorption = false;
  // Empirical bias correction after calibration (Note [Bias correction], quant/bias_correction.h),
  // on the calibration batches.
  bool bias_correction = false;
  // AdaRound after calibration, before bias correction (Note [AdaRound], quant/adaround.h):
  // `true` for the defaults, or {"iterations", "regularization", "beta": [start, end],
  // "warm_start", "images", "batch", "lr"}; its batches start at train.seed.
  bool adaround = false;
  quant::AdaRoundOptions adaround_options;
};

// The whole "quant" section: the spec, and apart from it how the stages run.
struct QuantSection {
  quant::QuantSpec spec;
  QatSettings qat;
  PtqSettings ptq;
  std::string fp32_checkpoint;  // empty: train fp32 first
};
// An absent or null section gives the defaults; errors name "quant.<key>".
QuantSection parse_quant_section(const nlohmann::json& section, const std::string& file);

struct RunConfig {
  std::string file;  // where it came from, for messages
  DataConfig data;
  ModelConfig model;
  TrainConfig train;
  QuantSection quant;
  SweepConfig sweep;
  CompareConfig calibrate_compare;
  SensitivityConfig sensitivity;
  std::string output_dir = "runs/default";
  bool force = false;     // replace a finished run in output_dir (the CLI's --force)
  nlohmann::json source;  // the config after overrides, saved beside the results
};

// Reads `path`, applies "a.b.c=value" overrides in order, validates.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig parse_config(const nlohmann::json& json, const std::string& file);

// The model a config describes (zoo name or layer list), initialized from `seed`.
nn::ModulePtr build_model(const RunConfig& config, uint64_t seed);
// What a saved model was built with (Note [Saved spec]): the model section and, for QAT
// and PTQ models, the quantization spec with its defaults filled in (mode, weight,
// activation, overrides — not run settings such as epochs or learning rates).
nlohmann::json model_spec(const RunConfig& config, bool with_quant);
// A saved file's spec against the current config: an error naming the file and the first
// difference ("quant.weight.bits: the file has 8, the config has 4"). Files without a spec
// (written before it existed) pass.
void check_model_spec(const nlohmann::json& saved_metadata, const RunConfig& config, bool with_quant,
                      const std::string& file);

// A layer list's shapes against one sample (C,H,W): the first layer that cannot take its
// input is an error naming model.layers.N (parse_config checks the 28x28 datasets; runs on
// "idx" data check once the data is loaded).
void check_layer_shapes(const RunConfig& config, const Shape& sample_shape);

}  // namespace qforge::train
