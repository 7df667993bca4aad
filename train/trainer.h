// The training loop and what it writes into the output folder:
//   metrics.jsonl    one JSON object per epoch (loss, accuracy, images/s, lr, elapsed)
//   checkpoint.qf    model + optimizer state + finished epochs, rewritten atomically each epoch
//   model.qf         the final model's state dict
// (stages other than fp32 add their name: checkpoint_qat.qf, model_qat.qf, metrics_qat.jsonl)
//   summary.json     one entry per stage run (stage, accuracy, loss, images_per_second, seconds)
// A NaN/Inf loss stops the run with a clear error; the last good checkpoint stays.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "nn/module.h"
#include "train/config.h"
#include "train/distributed.h"
#include "train/run_folder.h"

namespace qforge::train {

struct Datasets {
  data::Dataset train, test;
};
Datasets load_datasets(const DataConfig& config);

// A started run: its folder, held until the run ends (train/run_folder.h), and its data.
struct StartedRun {
  RunFolder folder;
  Datasets datasets;
};
// Starts a run in config.output_dir, writing nothing until its inputs are checked: loads
// the data, checks the model against it, claims the folder (a second run on it is
// refused), refuses to replace a finished run (any of `finished_files` present) unless
// config.force or resuming — with --force it first clears what the earlier run wrote,
// except `inputs` (an fp32 checkpoint in the same folder) —, removes temporary files that
// killed runs left (*.tmp.<pid> of processes that are gone), and only then writes config.json.
// `loaded`: config.data's datasets, already loaded (a study's runs share one load); checked
// against the model like freshly loaded ones.
StartedRun start_run(const RunConfig& config, const std::vector<std::string>& finished_files, bool resume,
                     const std::vector<std::string>& inputs = {}, const Datasets* loaded = nullptr);

struct EvalResult {
  double loss = 0, accuracy = 0, images_per_second = 0, seconds = 0;
};
// Mean cross-entropy and top-1 accuracy in eval mode, without gradients.
EvalResult evaluate(nn::Module& model, const data::Dataset& dataset, int64_t batch_size);
// The same over the ranks of `group`: rank 0's buffers first go to every rank, each rank
// evaluates its part of the images, and the sums are reduced (every rank gets the result).
EvalResult evaluate(nn::Module& model, const data::Dataset& dataset, int64_t batch_size,
                    const ProcessGroup& group);
// The same for any function from a batch of images to logits (the integer model).
using Forward = std::function<Tensor(const Tensor& images)>;
EvalResult evaluate(const Forward& forward, const data::Dataset& dataset, int64_t batch_size);

struct StageSummary {
  std::string stage;
  double accuracy = 0, loss = 0, images_per_second = 0, seconds = 0;
  int64_t epochs = 0;
  nlohmann::json extra = nlohmann::json::object();  // stage-specific figures
};

// Hooks a quantization stage uses to freeze observers / BN at given epochs.
using EpochHook = std::function<void(int64_t epoch)>;
// The training loss of one batch; cross-entropy (with the config's label smoothing) when unset.
using LossFunction = std::function<Tensor(const Tensor& images, const Tensor& logits, const Tensor& labels)>;

struct FitOptions {
  std::string stage = "fp32";
  std::string output_dir;
  bool resume = false;
  int64_t epochs = 0;             // from the config when 0
  double learning_rate = 0;       // from the config when 0
  int64_t stop_after_epochs = 0;  // > 0: stop there as if interrupted (schedule still spans all epochs)
  EpochHook on_epoch_start;       // optional
  LossFunction loss;              // optional
  bool quiet = false;
  // Data parallelism (Note [Data parallelism], train/distributed.h): the ranks that train
  // together; ProcessGroup::current() when unset (world(): one process unless started by mpirun).
  const ProcessGroup* group = nullptr;
};

StageSummary fit(nn::Module& model, const RunConfig& config, const Datasets& datasets,
                 const FitOptions& options);

// Adds (or replaces) a stage in output_dir/summary.json, atomically.
void record_stage(const std::string& output_dir, const StageSummary& summary);

}  // namespace qforge::train
