#include "train/stages.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/ops.h"
#include "core/threading.h"
#include "data/data_loader.h"
#include "quant/bias_correction.h"
#include "quant/convert.h"
#include "quant/equalize.h"
#include "quant/prepare.h"
#include "train/distributed.h"
#include "train/model_files.h"

namespace qforge::train {

namespace {

// The fp32 starting point: loaded from quant.fp32_checkpoint, or trained now. Fills the
// result's fp32 fields.
nn::ModulePtr fp32_model(const RunConfig& config, const Datasets& datasets, bool resume, StageResult& result,
                         const SharedInputs& shared) {
  nn::ModulePtr model = build_model(config, config.train.seed);
  const std::string& checkpoint = config.quant.fp32_checkpoint;
  if (checkpoint.empty()) {
    result.fp32 = fit(*model, config, datasets, {.stage = "fp32", .resume = resume});
    result.fp32_file = config.output_dir + "/model.qf";
    std::printf("fp32: test accuracy %.2f%%\n", 100 * result.fp32.accuracy);
    return model;
  }
  const SavedModel saved = read_saved_model(checkpoint);
  QF_CHECK(!saved.is_prepared, checkpoint, ": quant.fp32_checkpoint: a ", saved.stage,
           " model prepared for quantization; give the fp32 model (model.qf) it started from");
  check_model_spec(saved.metadata, config, false, checkpoint);
  model->load_state_dict(saved.state, checkpoint);
  if (shared.fp32 && shared.fp32_checkpoint == checkpoint) {
    result.fp32 = *shared.fp32;
  } else {
    const EvalResult eval = evaluate(*model, datasets.test, config.train.eval_batch_size);
    result.fp32 = {"fp32", eval.accuracy, eval.loss, 0, 0, 0, {{"checkpoint", checkpoint}}};
  }
  result.fp32_file = checkpoint;
  if (ProcessGroup::current().is_root()) record_stage(config.output_dir, result.fp32);
  std::printf("fp32 (from %s): test accuracy %.2f%%\n", checkpoint.c_str(), 100 * result.fp32.accuracy);
  return model;
}

// The integer model of a finished QAT/PTQ run. A quantization the integer runtime cannot
// run (1 bit, more than 8, affine weights) is reported, not fatal: the fake-quant results
// are already saved.
void deploy_if_convertible(quant::QatModel& prepared, const RunConfig& config, const Datasets& datasets,
                           const std::string& stage, const std::string& file, StageResult& result) {
  try {
    result.integer = deploy_integer_model(prepared, config, datasets, stage, file);
  } catch (const quant::ConvertError& error) {
    result.no_integer_reason = error.what();
    std::printf("%s: no integer model (%s)\n", stage.c_str(), error.what());
  }
}

// A copy of the fp32 model, in eval mode: prepare rewrites the model it is given in place,
// and QAT then trains its weights.
nn::ModulePtr copy_of(const RunConfig& config, const nn::Module& fp32) {
  nn::ModulePtr copy = build_model(config, config.train.seed);
  TensorMap state;
  for (auto& [name, tensor] : fp32.state_dict()) state[name] = tensor.clone();
  copy->load_state_dict(state, "the fp32 model");
  copy->eval();
  return copy;
}

// Knowledge distillation's loss, with a frozen copy of the fp32 model as the teacher.
LossFunction distillation(const RunConfig& config, const nn::ModulePtr& teacher) {
  const float weight = static_cast<float>(config.quant.qat.distillation_weight);
  const float temperature = static_cast<float>(config.quant.qat.distillation_temperature);
  const float smoothing = static_cast<float>(config.train.label_smoothing);
  std::printf("qat: distilling from the fp32 model (weight %g, temperature %g)\n", weight, temperature);
  return [=](const Tensor& images, const Tensor& logits, const Tensor& labels) {
    Tensor teacher_logits;
    {
      NoGradGuard no_grad;
      teacher_logits = teacher->forward(images);
    }
    Tensor hard = cross_entropy(logits, labels, smoothing);
    Tensor soft = distillation_loss(logits, teacher_logits, temperature);
    return add(mul(hard, 1.0f - weight), mul(soft, weight));
  };
}

// The QAT fine-tuning schedule: epochs, learning rate, and the epochs at which observers
// and BN statistics freeze.
FitOptions qat_schedule(const RunConfig& config, quant::QatModel& prepared, bool resume) {
  const QatSettings& qat = config.quant.qat;
  const int64_t epochs =
      qat.epochs > 0 ? qat.epochs
                     : std::max<int64_t>(1, std::llround(0.1 * static_cast<double>(config.train.epochs)));
  const double lr = qat.lr > 0 ? qat.lr : 0.01 * config.train.optimizer.lr;
  std::printf("qat: %lld fake quantizers, %lld epochs at lr %g\n",
              static_cast<long long>(quant::count_fake_quantizers(prepared)), static_cast<long long>(epochs),
              lr);
  FitOptions options{.stage = "qat", .resume = resume, .epochs = epochs, .learning_rate = lr};
  options.on_epoch_start = [&prepared, qat](int64_t epoch) {
    const bool observers_frozen = qat.freeze_observers_epoch >= 0 && epoch >= qat.freeze_observers_epoch;
    const bool bn_frozen = qat.freeze_bn_epoch >= 0 && epoch >= qat.freeze_bn_epoch;
    quant::set_observers(prepared, !observers_frozen);
    quant::freeze_batch_norm(prepared, bn_frozen);
  };
  return options;
}

}  // namespace

namespace {
// Forwards `batches` shuffled batches of `dataset` (seeded) through `model` in eval mode
// without gradients; errors name `what` and the batch. Returns how many ran. With a group of
// several ranks each forwards its rows of every batch (a last batch with fewer rows than
// ranks is left out: every rank must forward, its observers waiting for the others').
int64_t forward_batches(nn::Module& model, const data::Dataset& dataset, int64_t batches, int64_t batch_size,
                        uint64_t seed, const char* what, const ProcessGroup& group = ProcessGroup::solo()) {
  const bool was_training = model.is_training();
  model.eval();
  data::DataLoader loader(dataset, {.batch_size = batch_size,
                                    .shuffle = true,
                                    .seed = seed,
                                    .shard = group.rank(),
                                    .shards = group.size()});
  loader.start_epoch(0);
  int64_t done = 0;
  NoGradGuard no_grad;
  while (done < batches) {
    auto batch = loader.next();
    if (!batch || std::min(batch_size, dataset.size() - done * batch_size) < group.size()) break;
    try {
      model.forward(batch->images);
    } catch (const Error& error) {
      model.train(was_training);
      QF_FAIL(what, ": ", error.what(), " at batch ", done + 1,
              "; nothing was saved — check the data and data.normalize");
    }
    ++done;
  }
  model.train(was_training);
  return done;
}
}  // namespace

Calibration calibrate(nn::Module& prepared, const data::Dataset& dataset, int64_t batches, int64_t batch_size,
                      uint64_t seed) {
  quant::set_fake_quant(prepared, false);
  quant::set_observers(prepared, true, /*even_in_eval=*/true);
  Calibration result;
  const auto start = std::chrono::steady_clock::now();
  // Data parallel (Note [Data parallelism]): each rank observes its rows of every batch and
  // the observers combine each batch's statistics, so every rank ends with what one process
  // computes; observers that cannot combine (percentile, mse, entropy) see every batch whole,
  // on every rank alike.
  const ProcessGroup& group = ProcessGroup::current();
  const bool sharded = group.is_distributed() && quant::can_reduce_statistics(prepared);
  const GroupReducer reducer(group);
  const quant::ScopedStatisticsReducer reducing(sharded ? &prepared : nullptr, reducer);
  result.batches = forward_batches(prepared, dataset, batches, batch_size, seed, "calibration",
                                   sharded ? group : ProcessGroup::solo());
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  quant::set_observers(prepared, false);
  quant::set_fake_quant(prepared, true);
  return result;
}

quant::BiasCorrectionReport correct_bias(nn::Module& prepared, const data::Dataset& dataset, int64_t batches,
                                         int64_t batch_size, uint64_t seed) {
  return quant::correct_bias(
      prepared, [&] { forward_batches(prepared, dataset, batches, batch_size, seed, "bias correction"); });
}

quant::AdaRoundReport adaround(nn::Module& prepared, const data::Dataset& dataset,
                               const quant::AdaRoundOptions& options, int64_t batch_size, uint64_t seed,
                               const std::string& stage) {
  const int64_t batches = (options.images + batch_size - 1) / batch_size;
  const bool quiet = stage.empty();
  const char* name = stage.c_str();
  if (!quiet)
    std::printf("%s: adaround, %lld iterations per layer on %lld images\n", name,
                static_cast<long long>(options.iterations), static_cast<long long>(options.images));
  const auto start = std::chrono::steady_clock::now();
  quant::AdaRoundReport report = quant::adaround(
      prepared, options, [&] { forward_batches(prepared, dataset, batches, batch_size, seed, "adaround"); },
      [&](const quant::AdaRoundedLayer& layer) {
        if (quiet) return;
        std::printf(
            "%s: adaround: %s: %lld weights, %.1f%% rounded otherwise than nearest; loss %.4g -> %.4g; %.1f "
            "s\n",
            name, layer.name.c_str(), static_cast<long long>(layer.weights),
            100.0 * static_cast<double>(layer.changed) /
                static_cast<double>(std::max<int64_t>(1, layer.weights)),
            layer.loss_nearest, layer.loss_adaround, layer.seconds);
        std::fflush(stdout);
      });
  if (!quiet) {
    std::printf("%s: adaround of %zu layers in %.1f s", name, report.layers.size(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (!report.skipped.empty()) std::printf("; %zu binary layers skipped", report.skipped.size());
    std::printf("\n");
  }
  return report;
}

namespace {
// AdaRound as a stage configures it: quant.ptq.adaround's options, batches from train.seed.
quant::AdaRoundReport adaround_stage(nn::Module& prepared, const RunConfig& config,
                                     const data::Dataset& dataset, const char* stage) {
  quant::AdaRoundOptions options = config.quant.ptq.adaround_options;
  options.seed = config.train.seed;
  return adaround(prepared, dataset, options, config.train.batch_size, config.train.seed, stage);
}

// What summary.json records of an AdaRound run: its totals and each layer's line.
nlohmann::json adaround_summary(const quant::AdaRoundReport& report) {
  nlohmann::json layers = nlohmann::json::array();
  int64_t weights = 0, changed = 0;
  double seconds = 0;
  for (const quant::AdaRoundedLayer& layer : report.layers) {
    layers.push_back({{"layer", layer.name},
                      {"weights", layer.weights},
                      {"changed", layer.changed},
                      {"loss_nearest", layer.loss_nearest},
                      {"loss_adaround", layer.loss_adaround},
                      {"seconds", layer.seconds}});
    weights += layer.weights, changed += layer.changed, seconds += layer.seconds;
  }
  return {{"weights", weights},
          {"changed", changed},
          {"seconds", seconds},
          {"layers", layers},
          {"skipped", report.skipped}};
}
}  // namespace

StageResult run_fp32(const RunConfig& config, bool resume) {
  StartedRun run = start_run(config, {"model.qf"}, resume);
  StageResult result;
  result.fp32_model = build_model(config, config.train.seed);
  std::printf(
      "training %s on %s: %lld train / %lld test images, %lld parameters, %d threads -> %s\n",
      config.model.name.empty() ? "layer list" : config.model.name.c_str(), config.data.dataset.c_str(),
      static_cast<long long>(run.datasets.train.size()), static_cast<long long>(run.datasets.test.size()),
      static_cast<long long>(result.fp32_model->parameter_count()), num_threads(), config.output_dir.c_str());
  result.fp32 = fit(*result.fp32_model, config, run.datasets, {.stage = "fp32", .resume = resume});
  result.fp32_file = config.output_dir + "/model.qf";
  std::printf("fp32: test accuracy %.2f%%, loss %.4f, %.0f images/s, %.1f s\n", 100 * result.fp32.accuracy,
              result.fp32.loss, result.fp32.images_per_second, result.fp32.seconds);
  return result;
}

StageResult run_qat(const RunConfig& config, bool resume, const SharedInputs& shared) {
  QF_CHECK(
      config.quant.spec.mode == "static", config.file,
      ": quant.mode: dynamic quantization trains nothing; `qforge ptq` converts the fp32 model dynamically");
  QF_CHECK(!config.quant.ptq.adaround || config.quant.qat.calibration_batches > 0, config.file,
           ": quant.ptq.adaround: QAT starts from AdaRound's rounding after calibration; set "
           "quant.qat.calibration_batches (AdaRound needs calibrated weight scales)");
  std::vector<std::string> finished{"model_qat.qf"};
  if (config.quant.fp32_checkpoint.empty()) finished.push_back("model.qf");
  StartedRun run = start_run(config, finished, resume, {config.quant.fp32_checkpoint}, shared.datasets);
  StageResult result;
  nn::ModulePtr model = fp32_model(config, run.datasets, resume, result, shared);
  result.fp32_model = copy_of(config, *model);
  LossFunction loss;
  if (config.quant.qat.distillation_weight > 0) loss = distillation(config, result.fp32_model);
  result.prepared = quant::prepare_qat(model, config.quant.spec);
  // Optional calibration first (NVIDIA's calibrate-then-fine-tune): required when the
  // observers are frozen from the start, useful for calibrators, which are costly per batch.
  // A resumed run has its quantization parameters in the checkpoint already.
  if (config.quant.qat.calibration_batches > 0 && !resume) {
    const Calibration calibration =
        calibrate(*result.prepared, run.datasets.train, config.quant.qat.calibration_batches,
                  config.train.batch_size, config.train.seed);
    std::printf("qat: calibrated on %lld batches (%.1f s)\n", static_cast<long long>(calibration.batches),
                calibration.seconds);
    // AdaRound as QAT's starting point: training fine-tunes from its rounding.
    if (config.quant.ptq.adaround)
      result.adaround = adaround_stage(*result.prepared, config, run.datasets.train, "qat");
  }
  FitOptions options = qat_schedule(config, *result.prepared, resume);
  options.loss = loss;
  result.quantized = fit(*result.prepared, config, run.datasets, options);
  result.model_file = config.output_dir + "/model_qat.qf";
  std::printf("qat: fake-quant test accuracy %.2f%%, %.0f images/s\n", 100 * result.quantized->accuracy,
              result.quantized->images_per_second);
  if (!ProcessGroup::current().is_root()) return result;  // rank 0 converts and writes the integer model
  const UseGroup alone(ProcessGroup::solo());
  deploy_if_convertible(*result.prepared, config, run.datasets, "int8", "model_qat.qfm", result);
  return result;
}

StageResult run_ptq(const RunConfig& config, const SharedInputs& shared) {
  const bool is_dynamic = config.quant.spec.mode == "dynamic";
  std::vector<std::string> finished{is_dynamic ? "model_dynamic.qfm" : "model_ptq.qf"};
  if (config.quant.fp32_checkpoint.empty()) finished.push_back("model.qf");
  StartedRun run = start_run(config, finished, false, {config.quant.fp32_checkpoint}, shared.datasets);
  StageResult result;
  nn::ModulePtr model = fp32_model(config, run.datasets, false, result, shared);
  result.fp32_model = copy_of(config, *model);
  // Under mpirun the fp32 model was trained on every rank, and every rank calibrates its
  // part of each batch; the rest is rank 0's, alone.
  const bool is_root = ProcessGroup::current().is_root();
  if (is_dynamic) {  // quantize_dynamic: no calibration, no fake-quant model
    if (!is_root) return result;
    const UseGroup alone(ProcessGroup::solo());
    result.integer =
        deploy_dynamic_model(*result.fp32_model, config, run.datasets, "int8_dynamic", "model_dynamic.qfm");
    return result;
  }
  if (config.quant.ptq.equalize) {
    const quant::EqualizeReport equalized = quant::equalize(*model);
    std::printf("ptq: cross-layer equalization of %zu layer pairs (%d sweeps)%s\n", equalized.pairs.size(),
                equalized.sweeps, equalized.pairs.empty() ? "; this model has no pair to equalize" : "");
  }
  if (config.quant.ptq.high_bias_absorption) {
    const quant::HighBiasReport absorbed = quant::absorb_high_bias(*model);
    int64_t channels = 0;
    for (const quant::AbsorbedPair& pair : absorbed.pairs) channels += pair.channels;
    std::printf("ptq: high-bias absorption in %zu layer pairs, %lld channels\n", absorbed.pairs.size(),
                static_cast<long long>(channels));
  }
  result.prepared = quant::prepare_qat(model, config.quant.spec);
  const Calibration calibration =
      calibrate(*result.prepared, run.datasets.train, config.quant.ptq.calibration_batches,
                config.train.batch_size, config.train.seed);
  if (!is_root) return result;
  const UseGroup alone(ProcessGroup::solo());
  if (config.quant.ptq.adaround)
    result.adaround = adaround_stage(*result.prepared, config, run.datasets.train, "ptq");
  if (config.quant.ptq.bias_correction) {
    const quant::BiasCorrectionReport corrected =
        correct_bias(*result.prepared, run.datasets.train, config.quant.ptq.calibration_batches,
                     config.train.batch_size, config.train.seed);
    float largest = 0;
    for (const quant::CorrectedLayer& layer : corrected.layers) largest = std::max(largest, layer.largest);
    std::printf("ptq: bias correction of %zu layers (largest shift %.3g)", corrected.layers.size(), largest);
    if (!corrected.skipped.empty()) std::printf("; %zu without a bias to correct", corrected.skipped.size());
    std::printf("\n");
  }
  const EvalResult eval = evaluate(*result.prepared, run.datasets.test, config.train.eval_batch_size);
  const std::string non_finite = nn::first_non_finite(*result.prepared);  // Note [Finiteness gate]
  QF_CHECK(non_finite.empty(), "ptq: ", non_finite, " after calibration on ", calibration.batches,
           " batches; nothing was saved — check the data and data.normalize");
  QF_CHECK(std::isfinite(eval.loss), "ptq: the test loss is ", eval.loss,
           " with fake quantization; nothing was saved — check the data and data.normalize");
  result.model_file = config.output_dir + "/model_ptq.qf";
  save_model(*result.prepared, result.model_file, config, "ptq");
  result.quantized = StageSummary{"ptq",
                                  eval.accuracy,
                                  eval.loss,
                                  eval.images_per_second,
                                  calibration.seconds,
                                  0,
                                  {{"calibration_batches", calibration.batches}}};
  if (result.adaround) result.quantized->extra["adaround"] = adaround_summary(*result.adaround);
  record_stage(config.output_dir, *result.quantized);
  std::printf("ptq: calibrated on %lld batches, fake-quant test accuracy %.2f%%\n",
              static_cast<long long>(calibration.batches), 100 * eval.accuracy);
  deploy_if_convertible(*result.prepared, config, run.datasets, "int8_ptq", "model_ptq.qfm", result);
  return result;
}

}  // namespace qforge::train
