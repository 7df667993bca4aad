#include "train/quantize_runs.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/file_io.h"
#include "core/ops.h"
#include "core/serialize.h"
#include "data/data_loader.h"
#include "quant/convert.h"
#include "quant/prepare.h"
#include "train/deploy.h"
#include "train/model_files.h"

namespace qforge::train {

namespace {

// The fp32 starting point: loaded from quant.fp32_checkpoint, or trained now.
nn::ModulePtr fp32_model(const RunConfig& config, const quant::QuantConfig& quant_config,
                         const Datasets& datasets, bool resume) {
  nn::ModulePtr model = build_model(config, config.train.seed);
  if (!quant_config.fp32_checkpoint.empty()) {
    const SavedModel saved = read_saved_model(quant_config.fp32_checkpoint);
    QF_CHECK(!saved.is_prepared, quant_config.fp32_checkpoint, ": quant.fp32_checkpoint: a ", saved.stage,
             " model prepared for quantization; give the fp32 model (model.qf) it started from");
    check_model_spec(saved.metadata, config, false, quant_config.fp32_checkpoint);
    model->load_state_dict(saved.state, quant_config.fp32_checkpoint);
    EvalResult result = evaluate(*model, datasets.test, config.train.eval_batch_size);
    record_stage(
        config.output_dir,
        {"fp32", result.accuracy, result.loss, 0, 0, 0, {{"checkpoint", quant_config.fp32_checkpoint}}});
    std::printf("fp32 (from %s): test accuracy %.2f%%\n", quant_config.fp32_checkpoint.c_str(),
                100 * result.accuracy);
    return model;
  }
  StageSummary summary = fit(*model, config, datasets, {.stage = "fp32", .resume = resume});
  std::printf("fp32: test accuracy %.2f%%\n", 100 * summary.accuracy);
  return model;
}

}  // namespace

Calibration calibrate(nn::Module& prepared, const data::Dataset& dataset, int64_t batches, int64_t batch_size,
                      uint64_t seed) {
  const bool was_training = prepared.is_training();
  prepared.eval();
  quant::set_fake_quant(prepared, false);
  quant::set_observers(prepared, true, /*even_in_eval=*/true);
  data::DataLoader loader(dataset, {.batch_size = batch_size, .shuffle = true, .seed = seed});
  loader.start_epoch(0);
  Calibration result;
  auto start = std::chrono::steady_clock::now();
  {
    NoGradGuard no_grad;
    while (result.batches < batches) {
      auto batch = loader.next();
      if (!batch) break;
      try {
        prepared.forward(batch->images);
      } catch (const Error& error) {
        QF_FAIL("calibration: ", error.what(), " at batch ", result.batches + 1,
                "; nothing was saved — check the data and data.normalize");
      }
      ++result.batches;
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  quant::set_observers(prepared, false);
  quant::set_fake_quant(prepared, true);
  prepared.train(was_training);
  return result;
}

namespace {

// The integer model of a finished QAT/PTQ run. A quantization the integer runtime cannot
// run (1 bit, more than 8, affine weights) is reported, not fatal: the fake-quant results
// are already saved.
void deploy_if_convertible(quant::QatModel& prepared, const RunConfig& config, const Datasets& datasets,
                           const std::string& stage, const std::string& file) {
  try {
    deploy_integer_model(prepared, config, datasets, stage, file);
  } catch (const quant::ConvertError& error) {
    std::printf("%s: no integer model (%s)\n", stage.c_str(), error.what());
  }
}

}  // namespace

void run_qat(const RunConfig& config, bool resume) {
  const quant::QuantConfig quant_config = quant::parse_quant_config(config.quant, config.file);
  QF_CHECK(
      quant_config.mode == "static", config.file,
      ": quant.mode: dynamic quantization trains nothing; `qforge ptq` converts the fp32 model dynamically");
  std::vector<std::string> finished{"model_qat.qf"};
  if (quant_config.fp32_checkpoint.empty()) finished.push_back("model.qf");
  StartedRun run = start_run(config, finished, resume, {quant_config.fp32_checkpoint});
  const Datasets& datasets = run.datasets;
  nn::ModulePtr model = fp32_model(config, quant_config, datasets, resume);
  // The teacher for distillation: a frozen copy of the fp32 model (prepare rewrites the
  // model in place and QAT then trains its weights).
  nn::ModulePtr teacher;
  if (quant_config.qat.distillation_weight > 0) {
    teacher = build_model(config, config.train.seed);
    TensorMap fp32_state;
    for (auto& [name, tensor] : model->state_dict()) fp32_state[name] = tensor.clone();
    teacher->load_state_dict(fp32_state, "the fp32 model");
    teacher->eval();
  }
  auto prepared = quant::prepare_qat(model, quant_config);
  // Optional calibration first (NVIDIA's calibrate-then-fine-tune): required when the
  // observers are frozen from the start, useful for calibrators, which are costly per batch.
  // A resumed run has its quantization parameters in the checkpoint already.
  if (quant_config.qat.calibration_batches > 0 && !resume) {
    const Calibration calibration = calibrate(*prepared, datasets.train, quant_config.qat.calibration_batches,
                                              config.train.batch_size, config.train.seed);
    std::printf("qat: calibrated on %lld batches (%.1f s)\n", static_cast<long long>(calibration.batches),
                calibration.seconds);
  }
  const int64_t epochs =
      quant_config.qat.epochs > 0
          ? quant_config.qat.epochs
          : std::max<int64_t>(1, std::llround(0.1 * static_cast<double>(config.train.epochs)));
  const double lr = quant_config.qat.lr > 0 ? quant_config.qat.lr : 0.01 * config.train.optimizer.lr;
  std::printf("qat: %lld fake quantizers, %lld epochs at lr %g\n",
              static_cast<long long>(quant::count_fake_quantizers(*prepared)), static_cast<long long>(epochs),
              lr);
  FitOptions options{.stage = "qat", .resume = resume, .epochs = epochs, .learning_rate = lr};
  options.on_epoch_start = [&](int64_t epoch) {
    const bool observers_frozen =
        quant_config.qat.freeze_observers_epoch >= 0 && epoch >= quant_config.qat.freeze_observers_epoch;
    const bool bn_frozen = quant_config.qat.freeze_bn_epoch >= 0 && epoch >= quant_config.qat.freeze_bn_epoch;
    quant::set_observers(*prepared, !observers_frozen);
    quant::freeze_batch_norm(*prepared, bn_frozen);
  };
  if (teacher) {
    const float weight = static_cast<float>(quant_config.qat.distillation_weight);
    const float temperature = static_cast<float>(quant_config.qat.distillation_temperature);
    const float smoothing = static_cast<float>(config.train.label_smoothing);
    options.loss = [=](const Tensor& images, const Tensor& logits, const Tensor& labels) {
      Tensor teacher_logits;
      {
        NoGradGuard no_grad;
        teacher_logits = teacher->forward(images);
      }
      Tensor hard = cross_entropy(logits, labels, smoothing);
      Tensor soft = distillation_loss(logits, teacher_logits, temperature);
      return add(mul(hard, 1.0f - weight), mul(soft, weight));
    };
    std::printf("qat: distilling from the fp32 model (weight %g, temperature %g)\n", weight, temperature);
  }
  StageSummary summary = fit(*prepared, config, datasets, options);
  std::printf("qat: fake-quant test accuracy %.2f%%, %.0f images/s\n", 100 * summary.accuracy,
              summary.images_per_second);
  deploy_if_convertible(*prepared, config, datasets, "int8", "model_qat.qfm");
}

void run_ptq(const RunConfig& config) {
  const quant::QuantConfig quant_config = quant::parse_quant_config(config.quant, config.file);
  std::vector<std::string> finished{quant_config.mode == "dynamic" ? "model_dynamic.qfm" : "model_ptq.qf"};
  if (quant_config.fp32_checkpoint.empty()) finished.push_back("model.qf");
  StartedRun run = start_run(config, finished, false, {quant_config.fp32_checkpoint});
  const Datasets& datasets = run.datasets;
  nn::ModulePtr model = fp32_model(config, quant_config, datasets, false);
  if (quant_config.mode == "dynamic") {  // quantize_dynamic: no calibration, no fake-quant model
    deploy_dynamic_model(*model, config, datasets, "int8_dynamic", "model_dynamic.qfm");
    return;
  }
  auto prepared = quant::prepare_qat(model, quant_config);
  const Calibration calibration = calibrate(*prepared, datasets.train, quant_config.ptq.calibration_batches,
                                            config.train.batch_size, config.train.seed);
  const int64_t batches = calibration.batches;
  const double seconds = calibration.seconds;
  EvalResult result = evaluate(*prepared, datasets.test, config.train.eval_batch_size);
  const std::string non_finite = nn::first_non_finite(*prepared);  // Note [Finiteness gate]
  QF_CHECK(non_finite.empty(), "ptq: ", non_finite, " after calibration on ", batches,
           " batches; nothing was saved — check the data and data.normalize");
  QF_CHECK(std::isfinite(result.loss), "ptq: the test loss is ", result.loss,
           " with fake quantization; nothing was saved — check the data and data.normalize");
  save_model(*prepared, config.output_dir + "/model_ptq.qf", config, "ptq");
  record_stage(config.output_dir, {"ptq",
                                   result.accuracy,
                                   result.loss,
                                   result.images_per_second,
                                   seconds,
                                   0,
                                   {{"calibration_batches", batches}}});
  std::printf("ptq: calibrated on %lld batches, fake-quant test accuracy %.2f%%\n",
              static_cast<long long>(batches), 100 * result.accuracy);
  deploy_if_convertible(*prepared, config, datasets, "int8_ptq", "model_ptq.qfm");
}

}  // namespace qforge::train
