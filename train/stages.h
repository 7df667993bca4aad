// The stages a config drives, each returning what it computed (Note [Stage results]):
//   fp32  train the float model (`qforge train`)
//   qat   fp32 model (the config's quant.fp32_checkpoint, or trained first) -> prepare
//         (fuse, fold BN, insert FakeQuantize) -> fine-tune with the literature's recipe
//         (about 10% of the fp32 epochs, learning rate 1% of fp32's, cosine-annealed;
//         observers / BN statistics frozen at the configured epochs) -> evaluate -> the
//         integer model (train/deploy.h)
//   ptq   fp32 model -> prepare -> calibrate observers on N training batches in eval mode
//         -> evaluate with fake quantization -> the integer model; with quant.mode
//         "dynamic", the fp32 model quantized dynamically instead
// Each also writes its files into the run folder (summary.json, the models) for people and
// for --resume; `qforge eval` reloads them (load_saved_model, train/model_files.h).
//
// Note [Stage results]: a study composes stages through these values — accuracies, the
// integer model's agreement, the models themselves — never by reading summary.json or
// reloading a model a stage has just saved.
#pragma once

#include <memory>
#include <optional>

#include "quant/adaround.h"
#include "quant/bias_correction.h"
#include "quant/qat_modules.h"
#include "train/config.h"
#include "train/deploy.h"
#include "train/trainer.h"

namespace qforge::train {

struct StageResult {
  StageSummary fp32;                              // the fp32 model on the test set (trained, or loaded)
  std::optional<StageSummary> quantized;          // qat or ptq: the fake-quant model (absent for dynamic)
  std::optional<IntegerResult> integer;           // absent when the runtime cannot run this quantization
  std::string no_integer_reason;                  // then: why (the ConvertError's message)
  std::optional<quant::AdaRoundReport> adaround;  // when quant.ptq.adaround rounded the weights
  nn::ModulePtr fp32_model;
  std::shared_ptr<quant::QatModel> prepared;  // the fake-quant model (null for dynamic)
  std::string fp32_file;                      // the fp32 model's file (model.qf or quant.fp32_checkpoint)
  std::string model_file;                     // model_qat.qf / model_ptq.qf ("" for fp32 and dynamic)
};

// What a study's runs share instead of each redoing it (all optional): the datasets of
// config.data, loaded once, and the test-set result of the fp32 checkpoint `fp32_checkpoint`
// (what a run starting from it reports as its fp32 stage), evaluated once. The study gives
// them only to runs whose data, model and eval batch size are its own.
struct SharedInputs {
  const Datasets* datasets = nullptr;
  std::string fp32_checkpoint;
  std::optional<StageSummary> fp32;
};

StageResult run_fp32(const RunConfig& config, bool resume);
StageResult run_qat(const RunConfig& config, bool resume, const SharedInputs& shared = {});
StageResult run_ptq(const RunConfig& config, const SharedInputs& shared = {});

// Calibration (PTQ, and QAT's optional first step): eval mode (running BN statistics, no
// dropout), observers on, fake quant off, over `batches` shuffled batches of `dataset`;
// then observers off, fake quant on. An observer that sees a non-finite range stops it,
// naming the quantizer and the batch.
struct Calibration {
  int64_t batches = 0;
  double seconds = 0;
};
Calibration calibrate(nn::Module& prepared, const data::Dataset& dataset, int64_t batches, int64_t batch_size,
                      uint64_t seed);
// Empirical bias correction of a calibrated model (Note [Bias correction]) on the same kind
// of batches: each quantized layer in turn, the batches forwarded once per layer.
quant::BiasCorrectionReport correct_bias(nn::Module& prepared, const data::Dataset& dataset, int64_t batches,
                                         int64_t batch_size, uint64_t seed);
// AdaRound of a calibrated model (Note [AdaRound]) on the first options.images images of
// `dataset` in the seeded shuffled order, forwarded in batches of batch_size, the same at every
// pass; `stage` non-empty prints a progress line per layer under that name.
quant::AdaRoundReport adaround(nn::Module& prepared, const data::Dataset& dataset,
                               const quant::AdaRoundOptions& options, int64_t batch_size, uint64_t seed,
                               const std::string& stage = "");

}  // namespace qforge::train
