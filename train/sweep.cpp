#include "train/sweep.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>

#include "core/autograd.h"
#include "core/config_reader.h"
#include "core/file_io.h"
#include "core/serialize.h"
#include "nn/module.h"
#include "quant/fake_quantize.h"
#include "quant/numeric_suite.h"
#include "quant/observer.h"
#include "quant/prepare.h"
#include "quant/qconfig.h"
#include "train/charts.h"
#include "train/model_files.h"
#include "train/quantize_runs.h"
#include "train/trainer.h"

namespace qforge::train {

namespace {

using Clock = std::chrono::steady_clock;

SweepMethod builtin_method(const std::string& name, const ConfigReader& reader) {
  if (name == "ptq") return {"ptq", "ptq", nlohmann::json::object()};
  if (name == "qat") return {"qat", "qat", nlohmann::json::object()};
  if (name == "lsq")
    return {"lsq",
            "qat",
            {{"quant.weight.learnable", true},
             {"quant.activation.learnable", true},
             {"quant.activation.observer", "histogram"}}};
  reader.fail("methods",
              "unknown method \"" + name + "\" (built in: ptq, qat, lsq; or an object with name, kind, set)");
}

// Stdout of one run goes to its log.txt; restored however the run ends.
class StdoutTo {
 public:
  explicit StdoutTo(const std::string& path) {
    std::fflush(stdout);
    saved_ = ::dup(STDOUT_FILENO);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (saved_ < 0 || fd < 0) throw IoError(path + ": cannot write the run's log");
    ::dup2(fd, STDOUT_FILENO);
    ::close(fd);
  }
  ~StdoutTo() {
    std::fflush(stdout);
    ::dup2(saved_, STDOUT_FILENO);
    ::close(saved_);
  }
  StdoutTo(const StdoutTo&) = delete;
  StdoutTo& operator=(const StdoutTo&) = delete;

 private:
  int saved_ = -1;
};

std::string format_duration(double seconds) {
  char buffer[32];
  const auto whole = static_cast<long long>(std::llround(seconds));
  if (whole >= 60)
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", whole / 60, whole % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%llds", whole);
  return buffer;
}

std::string bits_label(const SweepRecord& r) {
  return "W" + std::to_string(r.weight_bits) + "A" + std::to_string(r.activation_bits);
}

// The fp32 model every run starts from: the config's checkpoint, or trained once here.
std::string fp32_checkpoint(const RunConfig& config, bool resume) {
  const quant::QuantConfig q = quant::parse_quant_config(config.quant, config.file);
  if (!q.fp32_checkpoint.empty()) return q.fp32_checkpoint;
  RunConfig fp32 = config;
  fp32.output_dir = config.output_dir + "/fp32";
  std::string model = fp32.output_dir + "/model.qf";
  if (resume && std::filesystem::exists(model)) return model;
  StartedRun run = start_run(fp32, {"model.qf"}, resume);
  const Datasets& datasets = run.datasets;
  nn::ModulePtr network = build_model(fp32, fp32.train.seed);
  std::fprintf(stderr, "sweep: training the fp32 model once (%lld epochs) -> %s\n",
               static_cast<long long>(fp32.train.epochs), model.c_str());
  {
    StdoutTo log(fp32.output_dir + "/log.txt");
    fit(*network, fp32, datasets, {.stage = "fp32", .resume = resume});
  }
  return model;
}

SweepRecord record_from_json(const nlohmann::json& j) {
  SweepRecord r{j.at("method"), j.at("weight_bits"), j.at("activation_bits"), j.at("seed")};
  r.accuracy = j.at("accuracy").is_null() ? 0.0 : j["accuracy"].get<double>();
  r.int8_accuracy =
      j.value("int8_accuracy", nlohmann::json()).is_null() ? -1.0 : j["int8_accuracy"].get<double>();
  r.seconds = j.at("seconds");
  r.error = j.value("error", "");
  return r;
}

void write_results(const std::string& dir, const std::string& stem, const std::vector<SweepRecord>& records,
                   double fp32_accuracy, const std::string& svg) {
  nlohmann::json all = nlohmann::json::array();
  std::string csv = "method,weight_bits,activation_bits,seed,accuracy,int8_accuracy,seconds\n";
  for (const SweepRecord& r : records) {
    all.push_back(to_json(r));
    char line[256];
    std::snprintf(line, sizeof line, "%s,%d,%d,%lld,%s,%s,%.2f\n", r.method.c_str(), r.weight_bits,
                  r.activation_bits, static_cast<long long>(r.seed),
                  r.error.empty() ? std::to_string(r.accuracy).c_str() : "",
                  r.int8_accuracy < 0 ? "" : std::to_string(r.int8_accuracy).c_str(), r.seconds);
    csv += line;
  }
  write_file_atomically(dir + "/" + stem + ".json",
                        nlohmann::json{{"fp32_accuracy", fp32_accuracy}, {"runs", all}}.dump(1) + "\n");
  write_file_atomically(dir + "/" + stem + ".csv", csv);
  if (!svg.empty()) write_file_atomically(dir + "/" + stem + ".svg", svg);
}

struct Stats {
  double mean = 0, std = 0;
  int count = 0;
};
Stats stats(const std::vector<double>& values) {
  Stats s;
  s.count = static_cast<int>(values.size());
  if (values.empty()) return s;
  for (double v : values) s.mean += v / s.count;
  for (double v : values) s.std += (v - s.mean) * (v - s.mean);
  s.std = s.count > 1 ? std::sqrt(s.std / (s.count - 1)) : 0;
  return s;
}

void print_table(const std::vector<SweepRecord>& records, const std::vector<SweepMethod>& methods, bool int8,
                 double fp32_accuracy) {
  std::printf("\n%s test accuracy (%%), mean ± std over seeds; fp32 %.2f%%\n",
              int8 ? "integer model" : "fake-quant", 100 * fp32_accuracy);
  std::printf("%-8s", "bits");
  for (const SweepMethod& m : methods) std::printf(" %16s", m.name.c_str());
  std::printf("\n");
  std::vector<std::string> labels;
  for (const SweepRecord& r : records)
    if (std::find(labels.begin(), labels.end(), bits_label(r)) == labels.end())
      labels.push_back(bits_label(r));
  for (const std::string& label : labels) {
    std::printf("%-8s", label.c_str());
    for (const SweepMethod& m : methods) {
      std::vector<double> values;
      int failed = 0;
      for (const SweepRecord& r : records) {
        if (r.method != m.name || bits_label(r) != label) continue;
        failed += !r.error.empty();
        if (r.error.empty() && (!int8 || r.int8_accuracy >= 0))
          values.push_back(100 * (int8 ? r.int8_accuracy : r.accuracy));
      }
      const Stats s = stats(values);
      char cell[32];
      if (failed > 0)  // a failed seed makes the cell's mean meaningless: say so
        std::snprintf(cell, sizeof cell, "%d failed", failed);
      else if (s.count == 0)
        std::snprintf(cell, sizeof cell, "-");
      else
        std::snprintf(cell, sizeof cell, "%.2f ± %.2f", s.mean, s.std);
      std::printf(" %16s", cell);
    }
    std::printf("\n");
  }
}

}  // namespace

SweepConfig parse_sweep_config(const nlohmann::json& section, const std::string& file) {
  ConfigReader reader(section, file, "sweep");
  SweepConfig sweep;
  if (reader.has("bits")) {
    sweep.bits.clear();
    for (double b : reader.numbers("bits", {})) {
      if (b != std::floor(b) || b < 1 || b > 16) reader.fail("bits", "expected whole widths in 1..16");
      sweep.bits.push_back(static_cast<int>(b));
    }
    if (sweep.bits.empty()) reader.fail("bits", "expected at least one width");
  } else {
    reader.raw("bits");
  }
  sweep.apply = reader.choice("apply", "both", {"both", "weights", "activations"});
  sweep.fixed_bits = static_cast<int>(reader.integer("fixed_bits", 8, 1));
  if (sweep.fixed_bits > 16) reader.fail("fixed_bits", "expected 1..16");
  sweep.seeds = reader.integer("seeds", 3, 1);
  if (sweep.seeds > 100) reader.fail("seeds", "expected at most 100");
  const nlohmann::json& methods = reader.raw("methods");
  if (methods.is_null()) {
    for (const char* name : {"ptq", "qat", "lsq"}) sweep.methods.push_back(builtin_method(name, reader));
  } else {
    if (!methods.is_array() || methods.empty()) reader.fail("methods", "expected a non-empty array");
    for (std::size_t i = 0; i < methods.size(); ++i) {
      if (methods[i].is_string()) {
        sweep.methods.push_back(builtin_method(methods[i].get<std::string>(), reader));
        continue;
      }
      ConfigReader item(methods[i], file, "sweep.methods." + std::to_string(i));
      SweepMethod m{item.string("name", ""), item.choice("kind", "qat", {"ptq", "qat"}), item.raw("set")};
      if (m.name.empty()) item.fail("name", "a method needs a name");
      if (m.set.is_null()) m.set = nlohmann::json::object();
      if (!m.set.is_object()) item.fail("set", "expected an object of \"a.b.c\": value overrides");
      item.finish();
      sweep.methods.push_back(m);
    }
  }
  for (std::size_t i = 0; i < sweep.methods.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (sweep.methods[i].name == sweep.methods[j].name)
        reader.fail("methods", "method \"" + sweep.methods[i].name + "\" appears twice");
  reader.finish();
  return sweep;
}

nlohmann::json to_json(const SweepRecord& r) {
  nlohmann::json j{
      {"method", r.method},
      {"weight_bits", r.weight_bits},
      {"activation_bits", r.activation_bits},
      {"seed", r.seed},
      {"accuracy", r.error.empty() ? nlohmann::json(r.accuracy) : nlohmann::json()},
      {"int8_accuracy", r.int8_accuracy < 0 ? nlohmann::json() : nlohmann::json(r.int8_accuracy)},
      {"seconds", r.seconds}};
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

namespace {

struct PlannedRun {
  SweepMethod method;
  int weight_bits, activation_bits;
  int64_t seed;
  std::string name() const {
    return method.name + "_w" + std::to_string(weight_bits) + "a" + std::to_string(activation_bits) + "_s" +
           std::to_string(seed);
  }
};

// Every (width, method, seed), in that order.
std::vector<PlannedRun> plan_runs(const SweepConfig& sweep, int64_t first_seed) {
  std::vector<PlannedRun> plan;
  for (int bits : sweep.bits)
    for (const SweepMethod& method : sweep.methods)
      for (int64_t s = 0; s < sweep.seeds; ++s)
        plan.push_back({method, sweep.apply == "activations" ? sweep.fixed_bits : bits,
                        sweep.apply == "weights" ? sweep.fixed_bits : bits, first_seed + s});
  return plan;
}

// One run: the config with this run's widths, method overrides, seed and folder, run as
// `qforge ptq` / `qforge qat` would (stdout into the folder's log.txt); its record is
// written last (sweep_run.json), so a killed run is rerun on --resume.
// The run's config: the study's, with this run's widths, overrides, seed and folder.
RunConfig run_config(const RunConfig& config, const PlannedRun& p, const std::string& fp32,
                     const std::string& run_dir) {
  nlohmann::json source = config.source;
  for (const char* study : {"sweep", "calibrate_compare", "sensitivity"}) source.erase(study);
  apply_override(source, "quant.weight.bits=" + std::to_string(p.weight_bits));
  apply_override(source, "quant.activation.bits=" + std::to_string(p.activation_bits));
  for (const auto& [key, value] : p.method.set.items()) apply_override(source, key + "=" + value.dump());
  apply_override(source, "quant.fp32_checkpoint=" + nlohmann::json(fp32).dump());
  apply_override(source, "train.seed=" + std::to_string(p.seed));
  apply_override(source, "output.dir=" + nlohmann::json(run_dir).dump());
  RunConfig run = parse_config(source, config.file + " (sweep run " + p.name() + ")");
  run.force = true;
  return run;
}

SweepRecord run_one(const RunConfig& config, const PlannedRun& p, const std::string& fp32,
                    const std::string& run_dir) {
  std::filesystem::remove_all(run_dir);
  std::filesystem::create_directories(run_dir);
  const RunConfig run = run_config(config, p, fp32, run_dir);
  const Clock::time_point start = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  // The marker records the config the run ran with: --resume reuses it only for the same one.
  auto write_marker = [&](const SweepRecord& record) {
    nlohmann::json marker = to_json(record);
    marker["config"] = run.source;
    write_file_atomically(run_dir + "/sweep_run.json", marker.dump() + "\n");
  };
  try {
    StdoutTo log(run_dir + "/log.txt");
    if (p.method.kind == "ptq")
      run_ptq(run);
    else
      run_qat(run, false);
  } catch (const IoError&) {
    throw;  // the machine failed, not the method: no result, and --resume runs it again
  } catch (const Error& error) {
    // One run failing (a diverging loss at 1 bit, say) is a result of the study, not its end.
    SweepRecord failed{p.method.name, p.weight_bits, p.activation_bits, p.seed};
    failed.seconds = seconds();
    failed.error = error.what();
    write_marker(failed);
    return failed;
  }
  const nlohmann::json summary = nlohmann::json::parse(read_file(run_dir + "/summary.json"));
  const std::string int8_stage = p.method.kind == "ptq" ? "int8_ptq" : "int8";
  SweepRecord record{p.method.name, p.weight_bits, p.activation_bits, p.seed};
  record.accuracy = summary.at(p.method.kind).at("accuracy").get<double>();
  record.int8_accuracy = summary.contains(int8_stage) ? summary[int8_stage]["accuracy"].get<double>() : -1.0;
  record.seconds = seconds();
  write_marker(record);
  return record;
}

// A run finished earlier, if its marker exists and records the config this run would run
// with now (a --resume with other settings reruns it, saying so).
std::optional<SweepRecord> finished_run(const std::string& marker, const RunConfig& run) {
  if (!std::filesystem::exists(marker)) return std::nullopt;
  const nlohmann::json saved = parse_json(read_file(marker), marker);
  if (!saved.is_object() || !saved.contains("config") || saved["config"] != run.source) {
    std::fprintf(stderr, "sweep: %s was run with another config; running it again\n", marker.c_str());
    return std::nullopt;
  }
  try {
    return record_from_json(saved);
  } catch (const std::exception&) {
    std::fprintf(stderr, "sweep: %s is unreadable; running it again\n", marker.c_str());
    return std::nullopt;
  }
}

void print_progress(std::size_t done, std::size_t total, const SweepRecord& r, bool reused, double eta) {
  char result[96];
  if (!r.error.empty())
    std::snprintf(result, sizeof result, "failed (see its log.txt)");
  else if (r.int8_accuracy >= 0)
    std::snprintf(result, sizeof result, "%.2f%%, int8 %.2f%%", 100 * r.accuracy, 100 * r.int8_accuracy);
  else
    std::snprintf(result, sizeof result, "%.2f%%", 100 * r.accuracy);
  std::fprintf(stderr, "[%zu/%zu] %-4s %s seed %lld: %s  %s, %zu left, ETA %s\n", done, total,
               r.method.c_str(), bits_label(r).c_str(), static_cast<long long>(r.seed), result,
               reused ? "finished earlier" : (std::to_string(std::lround(r.seconds)) + " s").c_str(),
               total - done, format_duration(eta).c_str());
  if (!r.error.empty()) std::fprintf(stderr, "        %s\n", r.error.c_str());
}

}  // namespace

namespace {

using ChartFunction = std::function<std::string(const std::vector<SweepRecord>&, double fp32_accuracy)>;

struct PlanResult {
  std::vector<SweepRecord> records;
  double fp32_accuracy = 0;
  std::string fp32_file;  // the fp32 model every run started from
};

// Runs (or, with --resume, reads back) every planned run over the fp32 model in order,
// rewriting DIR/<stem>.{json,csv,svg} after each.
PlanResult execute_plan(const RunConfig& config, const std::vector<PlannedRun>& plan, bool resume,
                        const std::string& stem, const ChartFunction& chart) {
  const std::string dir = config.output_dir;
  const RunFolder folder = RunFolder::claim(dir);  // one study per folder at a time
  QF_CHECK(resume || config.force || !std::filesystem::exists(dir + "/" + stem + ".json"), dir,
           " holds a finished ", stem, "; --resume continues it, --force replaces it");
  std::filesystem::create_directories(dir + "/runs");
  const std::string fp32 = fp32_checkpoint(config, resume);
  std::vector<SweepRecord> records;
  double fp32_accuracy = 0, run_seconds = 0;
  int64_t ran = 0;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const std::string run_dir = dir + "/runs/" + plan[i].name(), marker = run_dir + "/sweep_run.json";
    const std::optional<SweepRecord> earlier =
        resume ? finished_run(marker, run_config(config, plan[i], fp32, run_dir)) : std::nullopt;
    const bool reused = earlier.has_value();
    records.push_back(reused ? *earlier : run_one(config, plan[i], fp32, run_dir));
    if (!reused) run_seconds += records.back().seconds, ++ran;
    if (fp32_accuracy == 0 && std::filesystem::exists(run_dir + "/summary.json")) {
      const nlohmann::json summary = nlohmann::json::parse(read_file(run_dir + "/summary.json"));
      if (summary.contains("fp32")) fp32_accuracy = summary["fp32"]["accuracy"].get<double>();
    }
    write_results(dir, stem, records, fp32_accuracy, chart(records, fp32_accuracy));
    const double left = static_cast<double>(plan.size() - i - 1);
    print_progress(i + 1, plan.size(), records.back(), reused,
                   ran > 0 ? run_seconds / static_cast<double>(ran) * left : 0);
  }
  return {records, fp32_accuracy, fp32};
}

}  // namespace

std::vector<SweepRecord> run_sweep(const RunConfig& config, bool resume) {
  const SweepConfig sweep = parse_sweep_config(config.source.value("sweep", nlohmann::json()), config.file);
  const std::string title = config.file + ": " + config.model.name;
  const auto result = execute_plan(
      config, plan_runs(sweep, static_cast<int64_t>(config.train.seed)), resume, "sweep",
      [&](const std::vector<SweepRecord>& so_far, double fp32) { return sweep_svg(so_far, fp32, title); });
  const std::vector<SweepRecord>& records = result.records;
  const double fp32_accuracy = result.fp32_accuracy;
  print_table(records, sweep.methods, false, fp32_accuracy);
  print_table(records, sweep.methods, true, fp32_accuracy);
  std::printf("\n%s/sweep.csv, sweep.json, sweep.svg; each run's folder and log under %s/runs/\n",
              config.output_dir.c_str(), config.output_dir.c_str());
  return records;
}

CompareConfig parse_compare_config(const nlohmann::json& section, const std::string& file) {
  ConfigReader reader(section, file, "calibrate_compare");
  CompareConfig compare;
  compare.runs = reader.integer("runs", compare.runs, 1);
  compare.images = reader.integer("images", compare.images, 1);
  compare.bits = static_cast<int>(reader.integer("bits", compare.bits, 2));
  if (compare.bits > 16) reader.fail("bits", "expected 2..16");
  const nlohmann::json& methods = reader.raw("methods");
  if (!methods.is_null()) {
    if (!methods.is_array() || methods.empty())
      reader.fail("methods", "expected a non-empty array of observer kinds");
    compare.methods.clear();
    for (const nlohmann::json& m : methods) {
      if (!m.is_string()) reader.fail("methods", "expected observer kinds as strings (\"percentile:99.9\")");
      try {
        quant::ObserverChoice::parse(m.get<std::string>());
      } catch (const Error& error) {
        reader.fail("methods", error.what());
      }
      compare.methods.push_back(m.get<std::string>());
    }
  }
  reader.finish();
  return compare;
}

std::vector<SweepRecord> run_calibrate_compare(const RunConfig& config, bool resume) {
  const CompareConfig compare =
      parse_compare_config(config.source.value("calibrate_compare", nlohmann::json()), config.file);
  const int64_t batches = (compare.images + config.train.batch_size - 1) / config.train.batch_size;
  std::vector<PlannedRun> plan;
  for (const std::string& method : compare.methods) {
    const quant::ObserverChoice choice = quant::ObserverChoice::parse(method);
    nlohmann::json set{{"quant.activation.observer", quant::observer_info(choice.kind).name},
                       {"quant.ptq.calibration_batches", batches}};
    if (choice.kind == quant::ObserverKind::percentile)
      set["quant.activation.percentile"] = choice.percentile;
    if (quant::observer_info(choice.kind).is_calibrator)
      set["quant.activation.symmetric"] = true, set["quant.activation.signed"] = true;
    for (int64_t run = 0; run < compare.runs; ++run)
      plan.push_back(
          {{method, "ptq", set}, compare.bits, compare.bits, static_cast<int64_t>(config.train.seed) + run});
  }
  const std::string title = config.file + ": " + config.model.name;
  const auto result = execute_plan(
      config, plan, resume, "compare",
      [&](const std::vector<SweepRecord>& so_far, double fp32) { return compare_svg(so_far, fp32, title); });
  const std::vector<SweepRecord>& records = result.records;
  const double fp32_accuracy = result.fp32_accuracy;
  std::printf("\nPTQ at %d bits, %lld calibration runs of %lld images each (fp32 %.2f%%)\n", compare.bits,
              static_cast<long long>(compare.runs), static_cast<long long>(batches * config.train.batch_size),
              100 * fp32_accuracy);
  std::printf("%-20s %8s %8s %8s %10s\n", "method", "mean", "min", "max", "int8 mean");
  for (const std::string& method : compare.methods) {
    std::vector<double> values, int8;
    int failed = 0;
    for (const SweepRecord& r : records) {
      if (r.method != method) continue;
      failed += !r.error.empty();
      if (!r.error.empty()) continue;
      values.push_back(100 * r.accuracy);
      if (r.int8_accuracy >= 0) int8.push_back(100 * r.int8_accuracy);
    }
    if (values.empty()) {
      std::printf("%-20s %d failed\n", method.c_str(), failed);
      continue;
    }
    const auto [low, high] = std::minmax_element(values.begin(), values.end());
    char int8_mean[16] = "-";
    if (!int8.empty()) std::snprintf(int8_mean, sizeof int8_mean, "%.2f", stats(int8).mean);
    std::printf("%-20s %8.2f %8.2f %8.2f %10s%s\n", method.c_str(), stats(values).mean, *low, *high,
                int8_mean, failed ? " (some runs failed)" : "");
  }
  std::printf("\n%s/compare.csv, compare.json, compare.svg\n", config.output_dir.c_str());
  return records;
}

// ---- sensitivity ----------------------------------------------------------------------------

SensitivityConfig parse_sensitivity_config(const nlohmann::json& section, const std::string& file) {
  ConfigReader reader(section, file, "sensitivity");
  SensitivityConfig sensitivity;
  sensitivity.bits = static_cast<int>(reader.integer("bits", sensitivity.bits, 2));
  if (sensitivity.bits > 8) reader.fail("bits", "expected 2..8");
  sensitivity.target_accuracy = reader.number("target_accuracy", -1);
  if (sensitivity.target_accuracy != -1 &&
      (sensitivity.target_accuracy <= 0 || sensitivity.target_accuracy > 1))
    reader.fail("target_accuracy", "expected a fraction in (0, 1]");
  reader.finish();
  return sensitivity;
}

namespace {

// The layers a QConfig override can name, by dotted name: conv and linear layers, and
// residual blocks (their add's output quantizer).
std::vector<std::pair<std::string, nn::Module*>> quantizable_layers(nn::Module& model) {
  std::vector<std::pair<std::string, nn::Module*>> layers;
  for (const auto& [name, module] : model.named_modules())
    if (module->type_name() == "Conv2d" || module->type_name() == "Linear" ||
        module->type_name() == "BasicBlock")
      layers.emplace_back(name, module);
  return layers;
}

nlohmann::json at_bits(const std::string& name, int bits) {
  return {{"name", name}, {"weight", {{"bits", bits}}}, {"activation", {{"bits", bits}}}};
}

// The first `count` test images, normalized as training saw them.
Tensor test_images(const data::Dataset& test, int64_t count) {
  const int64_t n = std::min(count, test.size());
  const int64_t pixels = test.images.numel() / test.size();
  Shape shape = test.images.shape();
  shape[0] = n;
  Tensor images = Tensor::empty(shape);
  const uint8_t* bytes = test.images.data_as<uint8_t>();
  for (int64_t i = 0; i < n * pixels; ++i) images.data()[i] = test.normalize(bytes[i]);
  return images;
}

// Logits of `model` on `images` (eval mode, no gradients).
Tensor logits_on(nn::Module& model, const Tensor& images) {
  model.eval();
  NoGradGuard no_grad;
  return model.forward(images);
}

}  // namespace

std::vector<LayerSensitivity> run_sensitivity(const RunConfig& config, bool resume, double target_accuracy) {
  const SensitivityConfig settings =
      parse_sensitivity_config(config.source.value("sensitivity", nlohmann::json()), config.file);
  const int bits = settings.bits;
  const auto seed = static_cast<int64_t>(config.train.seed);
  nn::ModulePtr fp32_model = build_model(config, config.train.seed);
  std::vector<std::string> names, types;
  for (const auto& [name, module] : quantizable_layers(*fp32_model))
    names.push_back(name), types.push_back(module->type_name());
  QF_CHECK(!names.empty(), config.file, ": the model has no Conv2d or Linear layer to analyse");
  const std::size_t weighted = names.size();
  names.push_back("input"), types.push_back("Input");  // the network input's quantizer is a candidate too
  // Only L: everything else at 16 bits; all but L: L at 16 bits.
  std::vector<PlannedRun> plan{{{"all", "ptq", nlohmann::json::object()}, bits, bits, seed}};
  for (std::size_t l = 0; l < names.size(); ++l) {
    nlohmann::json only = nlohmann::json::array();
    for (std::size_t other = 0; other < names.size(); ++other)
      if (other != l) only.push_back(at_bits(names[other], 16));
    plan.push_back({{"only:" + names[l], "ptq", {{"quant.overrides", only}}}, bits, bits, seed});
    plan.push_back({{"all_but:" + names[l],
                     "ptq",
                     {{"quant.overrides", nlohmann::json::array({at_bits(names[l], 16)})}}},
                    bits,
                    bits,
                    seed});
  }
  const std::string title = config.file + ": " + config.model.name;
  const auto result =
      execute_plan(config, plan, resume, "sensitivity_runs", [](const std::vector<SweepRecord>&, double) {
        return std::string();  // the chart comes at the end (sensitivity.svg)
      });
  const std::vector<SweepRecord>& records = result.records;
  const double fp32_accuracy = result.fp32_accuracy;
  auto accuracy_of = [&](const std::string& method) {
    for (const SweepRecord& r : records)
      if (r.method == method) return r.error.empty() ? r.accuracy : 0.0;
    return 0.0;
  };
  // SQNRs (Numeric Suite): the weights directly; each layer's output in the all-quantized
  // model against the fused float model (the same prepared model, fake quantization off);
  // the logits of the "only L" model against the fp32 model's.
  const std::string& fp32_file = result.fp32_file;
  fp32_model->load_state_dict(read_saved_model(fp32_file).state, fp32_file);
  const Datasets datasets = load_datasets(config.data);
  const Tensor images = test_images(datasets.test, 512);
  const Tensor reference = logits_on(*fp32_model, images);
  std::map<std::string, double> output_sqnr;
  {
    const std::string all_dir = config.output_dir + "/runs/" + plan[0].name();
    const RunConfig all_config = run_config(config, plan[0], fp32_file, all_dir);
    if (std::filesystem::exists(all_dir + "/model_ptq.qf")) {
      nn::ModulePtr quantized = load_saved_model(all_config, all_dir + "/model_ptq.qf");
      nn::ModulePtr fused_float = load_saved_model(all_config, all_dir + "/model_ptq.qf");
      quant::set_fake_quant(*fused_float, false);
      std::vector<std::string> prepared_names;  // inside the QatModel: "model." + name
      for (std::size_t l = 0; l < weighted; ++l) prepared_names.push_back("model." + names[l]);
      for (const auto& [name, sqnr] :
           quant::compare_model_outputs(*fused_float, *quantized, prepared_names, images))
        output_sqnr[name.substr(6)] = sqnr;
      auto& input_quant = *dynamic_cast<quant::QatModel&>(*quantized).input_quant;
      NoGradGuard no_grad;
      output_sqnr["input"] = quant::sqnr_db(images, input_quant.forward(images));
    }
  }
  std::vector<LayerSensitivity> layers;
  const auto modules = quantizable_layers(*fp32_model);
  for (std::size_t l = 0; l < names.size(); ++l) {
    LayerSensitivity s{names[l], types[l], accuracy_of("only:" + names[l]),
                       accuracy_of("all_but:" + names[l])};
    if (l < weighted && types[l] != "BasicBlock") {
      const Tensor weight = modules[l].second->named_parameters().front().second;  // a copy: a temporary list
      const quant::QuantScheme scheme{.bits = bits, .is_signed = true, .symmetric = true, .axis = 0};
      auto observer = quant::make_observer(quant::ObserverChoice{quant::ObserverKind::minmax}, scheme);
      observer->observe(weight);
      s.weight_sqnr =
          quant::sqnr_db(weight, quant::fake_quantize(weight, observer->calculate_qparams(), scheme.range()));
    } else {
      s.weight_sqnr = NAN;  // the input and a block's add have no weights of their own
    }
    s.output_sqnr = output_sqnr.count(names[l]) ? output_sqnr.at(names[l]) : NAN;
    const PlannedRun& only = plan[1 + 2 * l];
    const std::string run_dir = config.output_dir + "/runs/" + only.name();
    if (std::filesystem::exists(run_dir + "/model_ptq.qf")) {
      nn::ModulePtr quantized =
          load_saved_model(run_config(config, only, fp32_file, run_dir), run_dir + "/model_ptq.qf");
      s.logits_sqnr = quant::sqnr_db(reference, logits_on(*quantized, images));
    }
    layers.push_back(s);
  }
  std::sort(layers.begin(), layers.end(), [](const LayerSensitivity& a, const LayerSensitivity& b) {
    return a.only_accuracy < b.only_accuracy;
  });

  std::printf(
      "\nper-layer sensitivity at %d bits (PTQ; fp32 %.2f%%, everything at %d bits %.2f%%), most sensitive "
      "first\n",
      bits, 100 * fp32_accuracy, bits, 100 * accuracy_of("all"));
  std::printf("%-26s %-10s %12s %12s %11s %11s %22s\n", "layer", "type", "only it (%)", "all but (%)",
              "weight SQNR", "output SQNR", "logits SQNR (only it)");
  nlohmann::json table = nlohmann::json::array();
  for (const LayerSensitivity& s : layers) {
    char weight_sqnr[16] = "-";
    if (!std::isnan(s.weight_sqnr)) std::snprintf(weight_sqnr, sizeof weight_sqnr, "%.1f dB", s.weight_sqnr);
    char output_sqnr_text[16] = "-";
    if (!std::isnan(s.output_sqnr))
      std::snprintf(output_sqnr_text, sizeof output_sqnr_text, "%.1f dB", s.output_sqnr);
    std::printf("%-26s %-10s %12.2f %12.2f %11s %11s %19.1f dB\n", s.layer.c_str(), s.type.c_str(),
                100 * s.only_accuracy, 100 * s.all_but_accuracy, weight_sqnr, output_sqnr_text,
                s.logits_sqnr);
    table.push_back(
        {{"layer", s.layer},
         {"type", s.type},
         {"only_quantized_accuracy", s.only_accuracy},
         {"all_but_accuracy", s.all_but_accuracy},
         {"weight_sqnr_db", std::isnan(s.weight_sqnr) ? nlohmann::json() : nlohmann::json(s.weight_sqnr)},
         {"output_sqnr_db", std::isnan(s.output_sqnr) ? nlohmann::json() : nlohmann::json(s.output_sqnr)},
         {"logits_sqnr_db", s.logits_sqnr}});
  }

  // The suggestion: keep at 8 bits the layers whose absence helps most, one more at a time.
  const double target = target_accuracy > 0            ? target_accuracy
                        : settings.target_accuracy > 0 ? settings.target_accuracy
                                                       : fp32_accuracy - 0.01;
  std::vector<LayerSensitivity> by_gain = layers;
  std::sort(by_gain.begin(), by_gain.end(), [](const LayerSensitivity& a, const LayerSensitivity& b) {
    return a.all_but_accuracy > b.all_but_accuracy;
  });
  nlohmann::json overrides = nlohmann::json::array(), tried = nlohmann::json::array();
  double reached = accuracy_of("all");
  for (std::size_t k = 0; k < by_gain.size() && reached < target; ++k) {
    overrides.push_back(at_bits(by_gain[k].layer, 8));
    const PlannedRun candidate{
        {"mixed_" + std::to_string(k + 1), "ptq", {{"quant.overrides", overrides}}}, bits, bits, seed};
    const std::string run_dir = config.output_dir + "/runs/" + candidate.name();
    const SweepRecord r = run_one(config, candidate, fp32_file, run_dir);
    reached = r.error.empty() ? r.accuracy : 0;
    tried.push_back({{"layers_at_8_bits", k + 1}, {"ptq_accuracy", reached}});
    std::fprintf(stderr, "suggestion: %zu layer(s) at 8 bits -> PTQ %.2f%% (target %.2f%%)\n", k + 1,
                 100 * reached, 100 * target);
  }
  nlohmann::json suggested = config.source;
  suggested.erase("sensitivity");
  apply_override(suggested, "quant.weight.bits=" + std::to_string(bits));
  apply_override(suggested, "quant.activation.bits=" + std::to_string(bits));
  apply_override(suggested, "quant.overrides=" + overrides.dump());
  apply_override(suggested, "quant.fp32_checkpoint=" + nlohmann::json(fp32_file).dump());
  apply_override(suggested, "output.dir=" + nlohmann::json(config.output_dir + "/suggested").dump());
  write_file_atomically(config.output_dir + "/suggested.json", suggested.dump(2) + "\n");
  // QAT on the suggestion, as a user would run it.
  const PlannedRun qat{{"suggested_qat", "qat", {{"quant.overrides", overrides}}}, bits, bits, seed};
  const SweepRecord final_run = run_one(config, qat, fp32_file, config.output_dir + "/runs/" + qat.name());
  nlohmann::json summary =
      nlohmann::json::parse(read_file(config.output_dir + "/runs/" + qat.name() + "/summary.json"));
  const int64_t bytes = summary.contains("int8") ? summary["int8"].value("model_bytes", int64_t{0}) : 0;
  const auto fp32_bytes = static_cast<int64_t>(std::filesystem::file_size(fp32_file));
  std::printf(
      "\nsuggested mixed precision for %.2f%%: %zu layer(s) at 8 bits, the rest at %d bits -> "
      "%s/suggested.json\n",
      100 * target, overrides.size(), bits, config.output_dir.c_str());
  std::printf(
      "  PTQ %.2f%%; QAT (qforge qat %s/suggested.json) %.2f%%, integer model %lld bytes (fp32 file %lld)\n",
      100 * reached, config.output_dir.c_str(), final_run.error.empty() ? 100 * final_run.accuracy : 0.0,
      static_cast<long long>(bytes), static_cast<long long>(fp32_bytes));
  write_file_atomically(
      config.output_dir + "/sensitivity.json",
      nlohmann::json{
          {"bits", bits},
          {"fp32_accuracy", fp32_accuracy},
          {"all_quantized_accuracy", accuracy_of("all")},
          {"layers", table},
          {"suggestion",
           {{"target_accuracy", target},
            {"overrides", overrides},
            {"tried", tried},
            {"qat_accuracy", final_run.error.empty() ? nlohmann::json(final_run.accuracy) : nlohmann::json()},
            {"model_bytes", bytes}}}}
              .dump(1) +
          "\n");
  write_file_atomically(config.output_dir + "/sensitivity.svg",
                        sensitivity_svg(layers, fp32_accuracy, bits, title));
  return layers;
}

}  // namespace qforge::train
