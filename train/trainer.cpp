#include "train/trainer.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "core/config_reader.h"
#include "core/file_io.h"
#include "core/ops.h"
#include "data/data_loader.h"
#include "nn/batch_norm.h"
#include "quant/prepare.h"
#include "train/curves.h"
#include "train/distributed.h"
#include "train/model_files.h"
#include "train/optimizer.h"

namespace qforge::train {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  Tensor predicted = argmax(logits, 1);
  int64_t correct = 0;
  for (int64_t i = 0; i < labels.numel(); ++i)
    correct += predicted.data_as<int32_t>()[i] == labels.data_as<int32_t>()[i];
  return correct;
}

void draw_progress(int64_t epoch, int64_t epochs, int64_t batch, int64_t batches, double loss) {
  const int width = 30;
  int filled = static_cast<int>(width * batch / std::max<int64_t>(1, batches));
  std::fprintf(stderr, "\repoch %lld/%lld [%s%s] %lld/%lld loss %.4f ", static_cast<long long>(epoch + 1),
               static_cast<long long>(epochs), std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), static_cast<long long>(batch),
               static_cast<long long>(batches), loss);
  std::fflush(stderr);
}

// fp32 writes checkpoint.qf / model.qf; other stages add their name: model_qat.qf.
std::string stage_file(const std::string& dir, const std::string& base, const std::string& stage) {
  return dir + "/" + base + (stage == "fp32" ? "" : "_" + stage) + ".qf";
}

std::string what_is_kept(int64_t epochs_done, const std::string& dir) {
  return epochs_done == 0
             ? "Nothing of this stage was saved"
             : "The last good checkpoint (" + std::to_string(epochs_done) + " epochs) is kept in " + dir;
}

// Nothing non-finite is saved (Note [Finiteness gate], nn/module.h): the test loss, every
// parameter and buffer and what the model derives from them (folded BN weights, 1/scale)
// are checked before an epoch's checkpoint (or the final model) is written.
void check_finite(const nn::Module& model, const EvalResult& eval, const std::string& stage, int64_t epoch,
                  const std::string& dir) {
  QF_CHECK(std::isfinite(eval.loss), "train (", stage, "): the test loss is ", eval.loss, " after epoch ",
           epoch + 1, "; stopping without saving it. ", what_is_kept(epoch, dir),
           " — lower the learning rate or check the data");
  const std::string non_finite = nn::first_non_finite(model);
  QF_CHECK(non_finite.empty(), "train (", stage, "): ", non_finite, " after epoch ", epoch + 1,
           "; stopping without saving it. ", what_is_kept(epoch, dir),
           " — lower the learning rate or check the data");
}

}  // namespace

Datasets load_datasets(const DataConfig& config) {
  return {data::load_idx_folder(config.path, data::Split::train, config.normalization, config.train_limit),
          data::load_idx_folder(config.path, data::Split::test, config.normalization, config.test_limit)};
}

namespace {
// Every label must name one of the model's outputs: a label of 200 for a 10-class model is
// an error naming its file and index here, not a cross-entropy failure mid-epoch.
void check_labels(const data::Dataset& dataset, int64_t classes, const std::string& file) {
  const int32_t* labels = dataset.labels.data_as<int32_t>();
  for (int64_t i = 0; i < dataset.size(); ++i)
    QF_CHECK(labels[i] >= 0 && labels[i] < classes, file, ": label ", labels[i], " at index ", i,
             " is outside 0..", classes - 1, " (the model has ", classes, " outputs)");
}
}  // namespace

namespace {
// The model must take the data's images: a zoo model built for 28x28 fails on 32x32 ones
// inside its first linear layer; say so with the model, the data and the image size.
int64_t classes_of_model(const RunConfig& config, const Shape& sample) {
  NoGradGuard no_grad;
  nn::ModulePtr model = build_model(config, 0);
  model->eval();
  Shape one{1};
  one.insert(one.end(), sample.begin(), sample.end());
  try {
    const Tensor logits = model->forward(Tensor::zeros(one));
    QF_CHECK(logits.dim() == 2, "expected (N, classes) outputs, got ", logits.shape());
    return logits.size(1);
  } catch (const Error& error) {
    QF_FAIL(config.file, ": model ", config.model.name.empty() ? "(layer list)" : config.model.name,
            " cannot take the ", shape_to_string(sample), " images of ", config.data.path, ": ",
            error.what());
  }
}

void remove_stale_temporaries(const std::string& dir) {
  namespace fs = std::filesystem;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const auto at = name.rfind(".tmp.");
    if (at == std::string::npos) continue;
    const std::string pid = name.substr(at + 5);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) fs::remove(entry.path());
  }
}
}  // namespace

StartedRun start_run(const RunConfig& config, const std::vector<std::string>& finished_files, bool resume,
                     const std::vector<std::string>& inputs, const Datasets* loaded) {
  Datasets datasets = loaded ? *loaded : load_datasets(config.data);
  const Shape sample(datasets.test.images.shape().begin() + 1, datasets.test.images.shape().end());
  check_layer_shapes(config, sample);
  const int64_t classes = classes_of_model(config, sample);
  check_labels(datasets.train, classes, config.data.path + "/train-labels-idx1-ubyte");
  check_labels(datasets.test, classes, config.data.path + "/t10k-labels-idx1-ubyte");
  const ProcessGroup& group = ProcessGroup::current();
  check_ranks_agree(config.source.dump(), datasets.train.images, datasets.train.labels, group);
  if (!group.is_root()) return {RunFolder(), std::move(datasets)};  // rank 0 alone writes
  RunFolder folder = RunFolder::claim(config.output_dir);
  namespace fs = std::filesystem;
  for (const std::string& file : finished_files) {
    const std::string path = config.output_dir + "/" + file;
    QF_CHECK(resume || config.force || !fs::exists(path), config.output_dir, " holds a finished run (", file,
             "); pass --force to replace it, --resume to continue it, or --out another folder");
  }
  if (config.force && !resume) clear_run_outputs(config.output_dir, inputs);
  remove_stale_temporaries(config.output_dir);
  write_file_atomically(config.output_dir + "/config.json", config.source.dump(2) + "\n");
  return {std::move(folder), std::move(datasets)};
}

EvalResult evaluate(const Forward& forward, const data::Dataset& dataset, int64_t batch_size) {
  NoGradGuard no_grad;
  data::DataLoader loader(dataset, {.batch_size = batch_size, .shuffle = false});
  loader.start_epoch(0);
  double total_loss = 0, seconds = 0;
  int64_t correct = 0;
  while (auto batch = loader.next()) {
    Clock::time_point start = Clock::now();
    Tensor logits = forward(batch->images);
    seconds += seconds_since(start);
    total_loss += cross_entropy(logits, batch->labels).item() * batch->labels.numel();
    correct += count_correct(logits, batch->labels);
  }
  const double n = static_cast<double>(dataset.size());
  return {total_loss / n, correct / n, n / seconds, seconds};
}

EvalResult evaluate(nn::Module& model, const data::Dataset& dataset, int64_t batch_size) {
  const bool was_training = model.is_training();
  model.eval();
  EvalResult result =
      evaluate([&](const Tensor& images) { return model.forward(images); }, dataset, batch_size);
  model.train(was_training);
  return result;
}

namespace {
// Rows [part.begin, part.end) of a dataset, copied.
data::Dataset rows_of(const data::Dataset& dataset, Shard part) {
  data::Dataset rows = dataset;
  Shape shape = dataset.images.shape();
  const int64_t image = dataset.images.numel() / shape[0];
  shape[0] = part.end - part.begin;
  rows.images = Tensor::empty(shape, DType::u8);
  rows.labels = Tensor::empty({shape[0]}, DType::s32);
  std::copy_n(dataset.images.data_as<uint8_t>() + part.begin * image, shape[0] * image,
              rows.images.data_as<uint8_t>());
  std::copy_n(dataset.labels.data_as<int32_t>() + part.begin, shape[0], rows.labels.data_as<int32_t>());
  return rows;
}
}  // namespace

EvalResult evaluate(nn::Module& model, const data::Dataset& dataset, int64_t batch_size,
                    const ProcessGroup& group) {
  if (!group.is_distributed()) return evaluate(model, dataset, batch_size);
  broadcast_buffers(model, group);
  const Shard part = shard_of(dataset.size(), group.rank(), group.size());
  const double rows = static_cast<double>(part.end - part.begin);
  const EvalResult mine = rows > 0 ? evaluate(model, rows_of(dataset, part), batch_size) : EvalResult{};
  double sums[3] = {mine.loss * rows, std::round(mine.accuracy * rows), mine.seconds};
  group.allreduce_sum(sums, 3);
  const double n = static_cast<double>(dataset.size()), seconds = sums[2] / group.size();
  return {sums[0] / n, sums[1] / n, n / seconds, seconds};
}

namespace {

// Where a stage stands: epochs finished, their metrics rows, the seconds they took.
struct Progress {
  int64_t epochs_done = 0;
  nlohmann::json history = nlohmann::json::array();
  double trained_seconds = 0;
};

// --resume: the stage's checkpoint restores model, optimizer, dropout RNG and progress —
// after checking it belongs to this run (stage, model spec, optimizer, epoch schedule).
Progress resume_from_checkpoint(nn::Module& model, Optimizer& optimizer, const RunConfig& config,
                                const std::string& file, const FitOptions& options, int64_t epochs) {
  const TrainConfig& t = config.train;
  const SavedModel checkpoint = read_saved_model(file);
  ConfigReader m = ConfigReader::metadata(checkpoint.metadata, file);
  QF_CHECK(checkpoint.kind == "checkpoint", file, ": a ", checkpoint.kind, ", not a checkpoint");
  const std::string stage = m.string("stage", "");
  QF_CHECK(stage == options.stage, file, ": holds stage \"", stage, "\", cannot resume stage \"",
           options.stage, "\"");
  check_model_spec(checkpoint.metadata, config, options.stage != "fp32", file);
  // The optimizer's state and the schedule belong to the run being resumed.
  const std::string saved_optimizer = m.string("optimizer", t.optimizer.type);
  QF_CHECK(saved_optimizer == t.optimizer.type, file,
           ": train.optimizer.type: the checkpoint was trained with ", saved_optimizer, ", the config says ",
           t.optimizer.type, "; resume with ", saved_optimizer);
  const int64_t saved_epochs = m.integer("epochs", epochs, 1);
  QF_CHECK(saved_epochs == epochs, file, ": the run was scheduled over ", saved_epochs,
           " epochs, the config says ", epochs,
           "; resuming would change the learning-rate schedule of the finished epochs — resume with ",
           saved_epochs, " epochs, or start a new run");
  if (!m.has("epochs_done")) m.fail("epochs_done", "missing");
  const int64_t epochs_done = m.integer("epochs_done", 0, 0);
  if (epochs_done > epochs)
    m.fail("epochs_done", "more than the run's " + std::to_string(epochs) + " epochs");
  Progress progress{epochs_done, m.raw("history"), m.number("seconds", 0.0)};
  if (!progress.history.is_array()) m.fail("history", "expected an array of epoch records");
  model.load_state_dict(checkpoint.state, file);
  optimizer.load_state(checkpoint.optimizer_state);
  if (m.has("random_state")) model.load_random_state(m.raw("random_state"), file);
  if (!options.quiet)
    std::cout << "resuming " << options.stage << " after epoch " << progress.epochs_done << "\n";
  return progress;
}

struct EpochStats {
  double loss_sum = 0, compute_seconds = 0;  // loss summed over images
  AllreduceSeconds allreduce;                // of compute_seconds: waiting for the ranks, summing
  int64_t buckets_started_in_backward = 0;   // summed over the steps
  int64_t steps = 0;
  int64_t correct = 0, seen = 0;
};

// How fit's ranks share the work (Note [Data parallelism], train/distributed.h).
struct DataParallel {
  const ProcessGroup& group;
  bool every_rank_forwards;  // observers or synced batch norms reduce inside forward
  GradientBuckets& buckets;  // the gradients' sums, started during backward
};

// One pass over the training set: the scheduled learning rate per batch, forward, loss,
// backward, step. A non-finite loss stops the run (the last checkpoint stays).
// Data parallel (Note [Data parallelism]): each rank runs its rows of the global batch, its
// mean loss scaled by its share, and the gradients and loss are summed over the ranks
// before the step — which every rank then takes alike.
EpochStats train_one_epoch(nn::Module& model, Optimizer& optimizer, data::DataLoader& loader,
                           const TrainConfig& t, const FitOptions& options, int64_t epoch, int64_t epochs,
                           double base_lr, const std::string& dir, int64_t train_size,
                           const DataParallel& parallel) {
  const ProcessGroup& group = parallel.group;
  const bool show_bar = !options.quiet && ::isatty(STDERR_FILENO);
  const int64_t batches = loader.batches_per_epoch();
  model.train();
  loader.start_epoch(epoch);
  EpochStats stats;
  int64_t batch_index = 0;
  while (auto batch = loader.next()) {
    Clock::time_point step_start = Clock::now();
    optimizer.set_learning_rate(scheduled_learning_rate(
        t.schedule, base_lr, epoch + static_cast<double>(batch_index) / batches, epochs));
    Tensor logits;
    float loss_value = 0;
    const int64_t rows = batch->labels.numel();
    const int64_t global_rows = std::min(t.batch_size, train_size - batch_index * t.batch_size);
    // Observers reduce inside forward, so every rank must run it on rows of its own: a last
    // batch smaller than the number of ranks is left out, on every rank alike.
    if (parallel.every_rank_forwards && global_rows < group.size()) {
      ++batch_index;
      continue;
    }
    try {
      if (rows > 0) {
        logits = model.forward(batch->images);
        Tensor loss = options.loss
                          ? options.loss(batch->images, logits, batch->labels)
                          : cross_entropy(logits, batch->labels, static_cast<float>(t.label_smoothing));
        if (group.is_distributed())
          loss = mul(loss, static_cast<float>(rows) / static_cast<float>(global_rows));
        loss_value = loss.item();
        QF_CHECK(group.is_distributed() || std::isfinite(loss_value), "loss is ", loss_value);
        optimizer.zero_grad();
        parallel.buckets.start_step();
        if (group.is_distributed()) {  // the sums start as backward finishes each bucket's gradients
          OnGradientReady report(parallel.buckets);
          loss.backward();
        } else {
          loss.backward();
        }
      } else {
        optimizer.zero_grad();
        parallel.buckets.start_step();
      }
      if (group.is_distributed()) {  // every rank sees the global loss, and stops together on NaN
        std::vector<double> loss_sum{loss_value};
        const AllreduceSeconds spent = parallel.buckets.finish(loss_sum);
        stats.allreduce.waiting += spent.waiting, stats.allreduce.transfer += spent.transfer;
        stats.buckets_started_in_backward += parallel.buckets.started_during_backward();
        loss_value = static_cast<float>(loss_sum[0]);
        if (!std::isfinite(loss_value)) fail_collectively("loss is ", loss_value);
      }
      optimizer.step();
    } catch (const Error& error) {
      std::ostringstream message;
      message << "train (" << options.stage << "): " << error.what() << " at epoch " << epoch + 1
              << ", batch " << batch_index + 1 << "; stopping. " << what_is_kept(epoch, dir)
              << " — lower the learning rate or check the data";
      if (dynamic_cast<const CollectiveError*>(&error) != nullptr) throw CollectiveError(message.str());
      throw Error(message.str());
    }
    stats.compute_seconds += seconds_since(step_start);
    ++stats.steps;
    stats.loss_sum += static_cast<double>(loss_value) * static_cast<double>(global_rows);
    if (rows > 0) stats.correct += count_correct(logits, batch->labels);
    stats.seen += global_rows;
    ++batch_index;
    if (show_bar && (batch_index % 10 == 0 || batch_index == batches))
      draw_progress(epoch, epochs, batch_index, batches, stats.loss_sum / stats.seen);
  }
  if (show_bar) std::fprintf(stderr, "\n");
  double correct = static_cast<double>(stats.correct);
  group.allreduce_sum(&correct, 1);
  stats.correct = std::llround(correct);
  return stats;
}

// After each epoch: the metrics file and the checkpoint, each rewritten whole and atomically.
void write_epoch(const std::string& dir, nn::Module& model, const Optimizer& optimizer,
                 const RunConfig& config, const FitOptions& options, const Progress& progress,
                 int64_t epochs) {
  std::string lines;
  for (const auto& h : progress.history) lines += h.dump() + "\n";
  write_file_atomically(dir + "/metrics" + (options.stage == "fp32" ? "" : "_" + options.stage) + ".jsonl",
                        lines);
  write_training_curves(dir, config.model.name.empty() ? config.file + " (layer list)" : config.model.name);
  TensorMap checkpoint;
  for (auto& [name, tensor] : model.state_dict()) checkpoint["model." + name] = tensor;
  for (auto& [name, tensor] : optimizer.state()) checkpoint["optimizer." + name] = tensor;
  nlohmann::json metadata = model_file_metadata(model, config, "checkpoint", options.stage);
  metadata.update({{"epochs_done", progress.epochs_done},
                   {"epochs", epochs},
                   {"optimizer", config.train.optimizer.type},
                   {"history", progress.history},
                   {"seconds", progress.trained_seconds},
                   {"random_state", model.random_state()},
                   {"config", config.source}});
  save_tensor_file(stage_file(dir, "checkpoint", options.stage), checkpoint, metadata);
}

}  // namespace

StageSummary fit(nn::Module& model, const RunConfig& config, const Datasets& datasets,
                 const FitOptions& given_options) {
  const ProcessGroup& group = given_options.group ? *given_options.group : ProcessGroup::current();
  FitOptions options = given_options;
  options.quiet = options.quiet || !group.is_root();
  const bool writes = group.is_root();
  const TrainConfig& t = config.train;
  const int64_t epochs = options.epochs > 0 ? options.epochs : t.epochs;
  const double base_lr = options.learning_rate > 0 ? options.learning_rate : t.optimizer.lr;
  const std::string dir = options.output_dir.empty() ? config.output_dir : options.output_dir;
  std::filesystem::create_directories(dir);
  auto optimizer = make_optimizer(model.parameters(), t.optimizer);
  const std::string checkpoint = stage_file(dir, "checkpoint", options.stage);
  Progress progress;
  if (options.resume && std::filesystem::exists(checkpoint))
    progress = resume_from_checkpoint(model, *optimizer, config, checkpoint, options, epochs);
  broadcast_state(model, group);  // every rank starts from rank 0's model
  // QAT across ranks: the observers see every rank's part of each batch (Note [Data
  // parallelism]); this process alone again however fit ends.
  const bool observes = group.is_distributed() && quant::count_fake_quantizers(model) > 0;
  const GroupReducer reducer(group);
  // train.sync_batchnorm: every batch norm sums its statistics over the ranks.
  std::vector<nn::BatchNorm2d*> synced;
  if (group.is_distributed() && t.sync_batchnorm)
    for (auto& [name, module] : model.named_modules())
      if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(module)) synced.push_back(bn);
  const GroupSum sum(group);
  const quant::ScopedStatisticsReducer reducing(observes ? &model : nullptr, reducer);
  struct Unsync {  // each batch norm on its own rows again however fit ends
    std::vector<nn::BatchNorm2d*>& synced;
    ~Unsync() {
      for (nn::BatchNorm2d* bn : synced) bn->sync = nullptr;
    }
  } unsync{synced};
  for (nn::BatchNorm2d* bn : synced) bn->sync = &sum;
  GradientBuckets buckets(
      optimizer->parameters(), group,
      std::max<int64_t>(1, std::llround(t.allreduce_bucket_mb * (1 << 20) / sizeof(float))));
  const DataParallel parallel{
      .group = group, .every_rank_forwards = observes || !synced.empty(), .buckets = buckets};

  data::DataLoader loader(datasets.train, {.batch_size = t.batch_size,
                                           .shuffle = true,
                                           .seed = t.seed,
                                           .augmentation = config.data.augmentation,
                                           .shard = group.rank(),
                                           .shards = group.size()});
  EvalResult last_eval;
  double last_images_per_second = 0;
  const int64_t first_epoch = progress.epochs_done;
  const int64_t last_epoch =
      options.stop_after_epochs > 0 ? std::min(epochs, options.stop_after_epochs) : epochs;
  for (int64_t epoch = first_epoch; epoch < last_epoch; ++epoch) {
    if (options.on_epoch_start) options.on_epoch_start(epoch);
    const Clock::time_point epoch_start = Clock::now();
    broadcast_buffers(model, group);  // frozen batch norms fold rank 0's statistics on every rank
    const EpochStats stats = train_one_epoch(model, *optimizer, loader, t, options, epoch, epochs, base_lr,
                                             dir, datasets.train.size(), parallel);
    const double epoch_seconds = seconds_since(epoch_start);
    progress.trained_seconds += epoch_seconds;
    last_eval = evaluate(model, datasets.test, t.eval_batch_size, group);
    check_finite(model, last_eval, options.stage, epoch, dir);
    last_images_per_second = stats.seen / stats.compute_seconds;
    progress.history.push_back({{"stage", options.stage},
                                {"epoch", epoch + 1},
                                {"train_loss", stats.loss_sum / stats.seen},
                                {"train_accuracy", static_cast<double>(stats.correct) / stats.seen},
                                {"test_loss", last_eval.loss},
                                {"test_accuracy", last_eval.accuracy},
                                {"images_per_second", last_images_per_second},
                                {"learning_rate", optimizer->learning_rate()},
                                {"epoch_seconds", epoch_seconds},
                                {"elapsed_seconds", progress.trained_seconds}});
    if (group.is_distributed()) {
      progress.history.back()["ranks"] = group.size();
      const double steps = static_cast<double>(std::max<int64_t>(1, stats.steps));
      progress.history.back()["allreduce_ms_per_step"] = 1e3 * stats.allreduce.transfer / steps;
      progress.history.back()["rank_wait_ms_per_step"] = 1e3 * stats.allreduce.waiting / steps;
      progress.history.back()["allreduce_buckets"] = buckets.buckets();
      progress.history.back()["buckets_started_in_backward_per_step"] =
          static_cast<double>(stats.buckets_started_in_backward) / steps;
    }
    progress.epochs_done = epoch + 1;
    if (!options.quiet)
      std::printf(
          "%s epoch %lld/%lld  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.0f img/s  %.1f s\n",
          options.stage.c_str(), static_cast<long long>(epoch + 1), static_cast<long long>(epochs),
          stats.loss_sum / stats.seen, 100.0 * stats.correct / stats.seen, last_eval.loss,
          100 * last_eval.accuracy, last_images_per_second, epoch_seconds);
    std::fflush(stdout);
    if (writes) write_epoch(dir, model, *optimizer, config, options, progress, epochs);
  }
  if (first_epoch >= epochs || progress.history.empty()) {
    last_eval = evaluate(model, datasets.test, t.eval_batch_size, group);
    check_finite(model, last_eval, options.stage, first_epoch, dir);
  }
  if (last_images_per_second == 0 && !progress.history.empty())
    last_images_per_second = progress.history.back()["images_per_second"];
  StageSummary summary{options.stage,          last_eval.accuracy,       last_eval.loss,
                       last_images_per_second, progress.trained_seconds, epochs};
  if (writes) {
    save_model(model, stage_file(dir, "model", options.stage), config, options.stage);
    record_stage(dir, summary);
  }
  return summary;
}

void record_stage(const std::string& output_dir, const StageSummary& s) {
  const std::string path = output_dir + "/summary.json";
  nlohmann::json summary{{"stages", nlohmann::json::array()}};
  if (std::filesystem::exists(path)) {
    nlohmann::json existing = nlohmann::json::parse(read_file(path), nullptr, false);
    if (existing.is_object() && existing.contains("stages")) summary = existing;
  }
  nlohmann::json entry{{"stage", s.stage},     {"accuracy", s.accuracy},
                       {"loss", s.loss},       {"images_per_second", s.images_per_second},
                       {"seconds", s.seconds}, {"epochs", s.epochs}};
  entry.update(s.extra);
  auto& stages = summary["stages"];
  bool replaced = false;
  for (auto& existing : stages)
    if (existing.value("stage", "") == s.stage) existing = entry, replaced = true;
  if (!replaced) stages.push_back(entry);
  summary[s.stage] = entry;  // direct access: summary["fp32"]["accuracy"]
  write_file_atomically(path, summary.dump(2) + "\n");
}

}  // namespace qforge::train
