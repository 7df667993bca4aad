#include "train/studies/runner.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/config_reader.h"
#include "core/file_io.h"
#include "train/distributed.h"
#include "train/run_folder.h"
#include "train/stages.h"

namespace qforge::train {

namespace {

using Clock = std::chrono::steady_clock;

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

// The fp32 model every run starts from: the config's checkpoint, or trained once here.
std::string fp32_checkpoint(const RunConfig& config, bool resume) {
  if (!config.quant.fp32_checkpoint.empty()) return config.quant.fp32_checkpoint;
  RunConfig fp32 = config;
  fp32.output_dir = config.output_dir + "/fp32";
  std::string model = fp32.output_dir + "/model.qf";
  if (resume && std::filesystem::exists(model)) return model;
  // Under mpirun every rank trains it together (data parallel); rank 0 writes and logs.
  std::optional<StdoutTo> log;
  if (ProcessGroup::current().is_root()) {
    std::fprintf(stderr, "sweep: training the fp32 model once (%lld epochs) -> %s\n",
                 static_cast<long long>(fp32.train.epochs), model.c_str());
    std::filesystem::create_directories(fp32.output_dir);
    log.emplace(fp32.output_dir + "/log.txt");
  }
  run_fp32(fp32, resume);
  return model;
}

SweepRecord record_from_json(const nlohmann::json& j) {
  SweepRecord r{j.at("method"), j.at("weight_bits"), j.at("activation_bits"), j.at("seed")};
  r.accuracy = j.at("accuracy").is_null() ? 0.0 : j["accuracy"].get<double>();
  r.int8_accuracy =
      j.value("int8_accuracy", nlohmann::json()).is_null() ? -1.0 : j["int8_accuracy"].get<double>();
  r.fp32_accuracy = j.value("fp32_accuracy", 0.0);
  r.seconds = j.at("seconds");
  r.error = j.value("error", "");
  return r;
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

std::string PlannedRun::name() const {
  return method.name + "_w" + std::to_string(weight_bits) + "a" + std::to_string(activation_bits) + "_s" +
         std::to_string(seed);
}

std::string bits_label(const SweepRecord& r) {
  return "W" + std::to_string(r.weight_bits) + "A" + std::to_string(r.activation_bits);
}

Stats stats(const std::vector<double>& values) {
  Stats s;
  s.count = static_cast<int>(values.size());
  if (values.empty()) return s;
  for (double v : values) s.mean += v / s.count;
  for (double v : values) s.std += (v - s.mean) * (v - s.mean);
  s.std = s.count > 1 ? std::sqrt(s.std / (s.count - 1)) : 0;
  return s;
}

RunConfig run_config(const RunConfig& study, const PlannedRun& p, const std::string& fp32_file,
                     const std::string& run_dir) {
  nlohmann::json source = study.source;
  for (const char* section : {"sweep", "calibrate_compare", "sensitivity"}) source.erase(section);
  apply_override(source, "quant.weight.bits=" + std::to_string(p.weight_bits));
  apply_override(source, "quant.activation.bits=" + std::to_string(p.activation_bits));
  for (const auto& [key, value] : p.method.set.items()) apply_override(source, key + "=" + value.dump());
  apply_override(source, "quant.fp32_checkpoint=" + nlohmann::json(fp32_file).dump());
  apply_override(source, "train.seed=" + std::to_string(p.seed));
  apply_override(source, "output.dir=" + nlohmann::json(run_dir).dump());
  RunConfig run = parse_config(source, study.file + " (sweep run " + p.name() + ")");
  run.force = true;
  return run;
}

RunOutcome run_one(const RunConfig& study, const PlannedRun& p, const std::string& fp32_file,
                   const std::string& run_dir, SharedInputs* shared) {
  std::filesystem::remove_all(run_dir);
  std::filesystem::create_directories(run_dir);
  const RunConfig run = run_config(study, p, fp32_file, run_dir);
  // A method's "set" may change the data or the model: such a run loads and evaluates its own.
  const bool shares =
      shared != nullptr &&
      run.source.value("data", nlohmann::json()) == study.source.value("data", nlohmann::json()) &&
      run.source.value("model", nlohmann::json()) == study.source.value("model", nlohmann::json()) &&
      run.train.eval_batch_size == study.train.eval_batch_size && !run.quant.fp32_checkpoint.empty();
  const SharedInputs given = shares ? *shared : SharedInputs{};
  const Clock::time_point start = Clock::now();
  RunOutcome outcome{{p.method.name, p.weight_bits, p.activation_bits, p.seed}, nullptr};
  SweepRecord& record = outcome.record;
  try {
    StdoutTo log(run_dir + "/log.txt");
    const StageResult result =
        p.method.kind == StageKind::ptq ? run_ptq(run, given) : run_qat(run, false, given);
    if (shares && !shared->fp32)
      shared->fp32 = result.fp32, shared->fp32_checkpoint = run.quant.fp32_checkpoint;
    record.accuracy = result.quantized ? result.quantized->accuracy : 0.0;
    record.int8_accuracy = result.integer ? result.integer->summary.accuracy : -1.0;
    record.fp32_accuracy = result.fp32.accuracy;
    outcome.prepared = result.prepared;
  } catch (const IoError&) {
    throw;  // the machine failed, not the method: no result, and --resume runs it again
  } catch (const Error& error) {
    // One run failing (a diverging loss at 1 bit, say) is a result of the study, not its end.
    record.error = error.what();
  }
  record.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // The marker records the config the run ran with: --resume reuses it only for the same one.
  nlohmann::json marker = to_json(record);
  marker["config"] = run.source;
  marker["fp32_accuracy"] = record.fp32_accuracy;
  write_file_atomically(run_dir + "/sweep_run.json", marker.dump() + "\n");
  return outcome;
}

namespace {
// The plan's run `i`: reused from an earlier study (--resume), or run now, on this process.
RunOutcome run_or_reuse(const RunConfig& config, const PlannedRun& run, const std::string& fp32_file,
                        bool resume, bool& reused, SharedInputs& shared) {
  const std::string run_dir = config.output_dir + "/runs/" + run.name();
  const std::optional<SweepRecord> earlier =
      resume ? finished_run(run_dir + "/sweep_run.json", run_config(config, run, fp32_file, run_dir))
             : std::nullopt;
  reused = earlier.has_value();
  if (earlier) return {*earlier, nullptr};
  return run_one(config, run, fp32_file, run_dir, &shared);
}
}  // namespace

// Under mpirun (Note [Data parallelism], train/distributed.h) the fp32 model is trained once
// by every rank together; then the plan goes in rounds of N runs, rank r taking run
// round·N + r alone, and after each round every rank gathers the round's records, so rank
// 0 writes the tables and prints the progress — the same records in the same order as one
// process. Rank 0 alone claims the folder and writes.
PlanResult execute_plan(const RunConfig& config, const std::vector<PlannedRun>& plan, bool resume,
                        const std::string& stem, const ChartFunction& chart) {
  const std::string dir = config.output_dir;
  const ProcessGroup& group = ProcessGroup::current();
  RunFolder folder;
  if (group.is_root()) {
    folder = RunFolder::claim(dir);  // one study per folder at a time
    QF_CHECK(resume || config.force || !std::filesystem::exists(dir + "/" + stem + ".json"), dir,
             " holds a finished ", stem, "; --resume continues it, --force replaces it");
    std::filesystem::create_directories(dir + "/runs");
  }
  PlanResult result;
  result.fp32_file = fp32_checkpoint(config, resume);
  group.allgather("");  // rank 0 has written the fp32 model before any rank reads it
  const UseGroup alone(ProcessGroup::solo());
  // The data loaded once for all the runs, and the fp32 checkpoint's result kept from the first.
  const Datasets datasets = load_datasets(config.data);
  SharedInputs shared{.datasets = &datasets};
  const auto ranks = static_cast<std::size_t>(group.size()), rank = static_cast<std::size_t>(group.rank());
  double run_seconds = 0;
  int64_t ran = 0;
  for (std::size_t round = 0; round < plan.size(); round += ranks) {
    nlohmann::json mine;  // this rank's run of the round, as a record
    RunOutcome outcome;
    if (round + rank < plan.size()) {
      bool reused = false;
      outcome = run_or_reuse(config, plan[round + rank], result.fp32_file, resume, reused, shared);
      mine = to_json(outcome.record);
      mine["fp32_accuracy"] = outcome.record.fp32_accuracy;
      mine["reused"] = reused;
    }
    const std::vector<std::string> gathered = group.allgather(mine.dump());
    for (std::size_t r = 0; r < ranks && round + r < plan.size(); ++r) {
      const nlohmann::json record = nlohmann::json::parse(gathered[r]);
      result.records.push_back(record_from_json(record));
      result.models.push_back(r == rank ? outcome.prepared : nullptr);
      const bool reused = record.at("reused").get<bool>();
      if (!reused) run_seconds += result.records.back().seconds, ++ran;
      if (result.fp32_accuracy == 0) result.fp32_accuracy = result.records.back().fp32_accuracy;
      if (!group.is_root()) continue;
      write_results(dir, stem, result.records, result.fp32_accuracy,
                    chart(result.records, result.fp32_accuracy));
      const double left = static_cast<double>(plan.size() - result.records.size());
      print_progress(
          result.records.size(), plan.size(), result.records.back(), reused,
          ran > 0 ? run_seconds / static_cast<double>(ran) * left / static_cast<double>(ranks) : 0);
    }
  }
  return result;
}

}  // namespace qforge::train
