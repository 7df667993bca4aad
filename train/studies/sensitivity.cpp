// The sensitivity study in four steps: plan (the runs), measure (accuracies and SQNRs),
// report (table, JSON, chart), suggest (the mixed-precision config).
#include "train/studies/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "core/autograd.h"
#include "core/config_reader.h"
#include "core/file_io.h"
#include "data/data_loader.h"
#include "quant/equalize.h"
#include "quant/numeric_suite.h"
#include "quant/prepare.h"
#include "train/distributed.h"
#include "train/model_files.h"
#include "train/studies/charts.h"
#include "train/studies/runner.h"
#include "train/trainer.h"

namespace qforge::train {

namespace {

// A layer the study quantizes alone: conv and linear layers and residual blocks (their
// add's output quantizer), in the model's order, then the network input's quantizer.
struct Candidate {
  std::string name, type;
  Tensor weight;  // undefined: no weights of its own
};

std::vector<Candidate> candidates(nn::Module& model) {
  std::vector<Candidate> out;
  for (const auto& [name, module] : model.named_modules()) {
    const std::string type = module->type_name();
    if (type != "Conv2d" && type != "Linear" && type != "BasicBlock") continue;
    out.push_back({name, type, type == "BasicBlock" ? Tensor() : module->named_parameters().front().second});
  }
  QF_CHECK(!out.empty(), "sensitivity: the model has no Conv2d or Linear layer to analyse");
  out.push_back({"input", "Input", Tensor()});
  return out;
}

nlohmann::json at_bits(const std::string& name, int bits) {
  return {{"name", name}, {"weight", {{"bits", bits}}}, {"activation", {{"bits", bits}}}};
}

// Run 0 quantizes everything at `bits`; then, per candidate L, "only:L" (the others at 16
// bits) and "all_but:L" (L at 16 bits).
std::vector<PlannedRun> plan_sensitivity(const std::vector<Candidate>& layers, int bits, int64_t seed) {
  std::vector<PlannedRun> plan{{{"all", StageKind::ptq, nlohmann::json::object()}, bits, bits, seed}};
  for (std::size_t l = 0; l < layers.size(); ++l) {
    nlohmann::json only = nlohmann::json::array();
    for (std::size_t other = 0; other < layers.size(); ++other)
      if (other != l) only.push_back(at_bits(layers[other].name, 16));
    plan.push_back(
        {{"only:" + layers[l].name, StageKind::ptq, {{"quant.overrides", only}}}, bits, bits, seed});
    plan.push_back({{"all_but:" + layers[l].name,
                     StageKind::ptq,
                     {{"quant.overrides", nlohmann::json::array({at_bits(layers[l].name, 16)})}}},
                    bits,
                    bits,
                    seed});
  }
  return plan;
}

// The study's measurements: what the runs computed, and the models they made (read back
// from their folders for runs an earlier, killed study finished).
struct Measurements {
  const RunConfig& config;
  const std::vector<PlannedRun>& plan;
  const PlanResult& runs;
  double accuracy_of(const std::string& method) const {
    for (const SweepRecord& r : runs.records)
      if (r.method == method) return r.error.empty() ? r.accuracy : 0.0;
    return 0.0;
  }
  std::shared_ptr<quant::QatModel> model_of(std::size_t i) const {
    if (runs.models[i]) return runs.models[i];
    const std::string dir = config.output_dir + "/runs/" + plan[i].name();
    if (!std::filesystem::exists(dir + "/model_ptq.qf")) return nullptr;
    return std::dynamic_pointer_cast<quant::QatModel>(
        load_saved_model(run_config(config, plan[i], runs.fp32_file, dir), dir + "/model_ptq.qf"));
  }
};

// The first `count` test images, as evaluation feeds them.
Tensor test_images(const data::Dataset& test, int64_t count) {
  data::DataLoader loader(test, {.batch_size = count, .shuffle = false});
  loader.start_epoch(0);
  return loader.next()->images;
}

Tensor logits_on(nn::Module& model, const Tensor& images) {
  model.eval();
  NoGradGuard no_grad;
  return model.forward(images);
}

// Each candidate's output SQNR in the all-quantized model against the fused float model: the
// fp32 model prepared the same way (equalized first where PTQ equalizes) with its fake
// quantization off. Not the quantized model's own weights with fake quantization off: bias
// correction and AdaRound change the stored biases and weights, and their error would vanish.
std::map<std::string, double> output_sqnrs(const Measurements& m, const std::vector<Candidate>& layers,
                                           const Tensor& images) {
  std::map<std::string, double> sqnr;
  const std::shared_ptr<quant::QatModel> quantized = m.model_of(0);
  if (!quantized) return sqnr;
  const RunConfig all = run_config(m.config, m.plan[0], m.runs.fp32_file, m.config.output_dir);
  nn::ModulePtr fp32 = build_model(all, all.train.seed);
  fp32->load_state_dict(read_saved_model(m.runs.fp32_file).state, m.runs.fp32_file);
  if (all.quant.ptq.equalize) quant::equalize(*fp32);
  if (all.quant.ptq.high_bias_absorption) quant::absorb_high_bias(*fp32);
  auto fused_float = quant::prepare_qat(fp32, all.quant.spec);
  quant::set_fake_quant(*fused_float, false);
  std::vector<std::string> prepared_names;  // inside the QatModel: "model." + name
  for (const Candidate& c : layers)
    if (c.type != "Input") prepared_names.push_back("model." + c.name);
  for (const auto& [name, value] :
       quant::compare_model_outputs(*fused_float, *quantized, prepared_names, images))
    sqnr[name.substr(std::string("model.").size())] = value;
  NoGradGuard no_grad;
  quantized->eval();
  sqnr["input"] = quant::sqnr_db(images, quantized->input_quant->forward(images));
  return sqnr;
}

std::vector<LayerSensitivity> measure(const Measurements& m, const std::vector<Candidate>& layers, int bits) {
  nn::ModulePtr fp32 = build_model(m.config, m.config.train.seed);
  fp32->load_state_dict(read_saved_model(m.runs.fp32_file).state, m.runs.fp32_file);
  const Tensor images = test_images(load_datasets(m.config.data).test, 512);
  const Tensor reference = logits_on(*fp32, images);
  const std::map<std::string, double> output_sqnr = output_sqnrs(m, layers, images);
  std::vector<LayerSensitivity> out;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    LayerSensitivity s{layers[l].name, layers[l].type, m.accuracy_of("only:" + layers[l].name),
                       m.accuracy_of("all_but:" + layers[l].name)};
    // The input and a block's add have no weights of their own.
    s.weight_sqnr = layers[l].weight.defined() ? quant::weight_sqnr_db(layers[l].weight, bits) : NAN;
    s.output_sqnr = output_sqnr.count(layers[l].name) ? output_sqnr.at(layers[l].name) : NAN;
    if (const auto only = m.model_of(1 + 2 * l))
      s.logits_sqnr = quant::sqnr_db(reference, logits_on(*only, images));
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const LayerSensitivity& a, const LayerSensitivity& b) {
    return a.only_accuracy < b.only_accuracy;
  });
  return out;
}

nlohmann::json optional_number(double value) {
  return std::isnan(value) ? nlohmann::json() : nlohmann::json(value);
}

// The ranked table on stdout; returns it as JSON for sensitivity.json.
nlohmann::json report(const std::vector<LayerSensitivity>& layers, int bits, double fp32_accuracy,
                      double all_accuracy) {
  std::printf(
      "\nper-layer sensitivity at %d bits (PTQ; fp32 %.2f%%, everything at %d bits %.2f%%), most sensitive "
      "first\n",
      bits, 100 * fp32_accuracy, bits, 100 * all_accuracy);
  std::printf("%-26s %-10s %12s %12s %11s %11s %22s\n", "layer", "type", "only it (%)", "all but (%)",
              "weight SQNR", "output SQNR", "logits SQNR (only it)");
  nlohmann::json table = nlohmann::json::array();
  for (const LayerSensitivity& s : layers) {
    char weight_sqnr[16] = "-", output_sqnr[16] = "-";
    if (!std::isnan(s.weight_sqnr)) std::snprintf(weight_sqnr, sizeof weight_sqnr, "%.1f dB", s.weight_sqnr);
    if (!std::isnan(s.output_sqnr)) std::snprintf(output_sqnr, sizeof output_sqnr, "%.1f dB", s.output_sqnr);
    std::printf("%-26s %-10s %12.2f %12.2f %11s %11s %19.1f dB\n", s.layer.c_str(), s.type.c_str(),
                100 * s.only_accuracy, 100 * s.all_but_accuracy, weight_sqnr, output_sqnr, s.logits_sqnr);
    table.push_back({{"layer", s.layer},
                     {"type", s.type},
                     {"only_quantized_accuracy", s.only_accuracy},
                     {"all_but_accuracy", s.all_but_accuracy},
                     {"weight_sqnr_db", optional_number(s.weight_sqnr)},
                     {"output_sqnr_db", optional_number(s.output_sqnr)},
                     {"logits_sqnr_db", s.logits_sqnr}});
  }
  return table;
}

struct Suggestion {
  nlohmann::json overrides = nlohmann::json::array(), tried = nlohmann::json::array();
  double ptq_accuracy = 0, target = 0;
  SweepRecord qat;
  int64_t model_bytes = 0;
};

// Keeps at 8 bits the layers whose absence helps most, one more at a time, until a PTQ run
// reaches the target; writes suggested.json and runs QAT on it once.
Suggestion suggest(const RunConfig& config, const std::vector<LayerSensitivity>& layers,
                   const Measurements& m, int bits, double target) {
  const auto seed = static_cast<int64_t>(config.train.seed);
  std::vector<LayerSensitivity> by_gain = layers;
  std::sort(by_gain.begin(), by_gain.end(), [](const LayerSensitivity& a, const LayerSensitivity& b) {
    return a.all_but_accuracy > b.all_but_accuracy;
  });
  Suggestion s{.ptq_accuracy = m.accuracy_of("all"), .target = target};
  for (std::size_t k = 0; k < by_gain.size() && s.ptq_accuracy < target; ++k) {
    s.overrides.push_back(at_bits(by_gain[k].layer, 8));
    const PlannedRun candidate{
        {"mixed_" + std::to_string(k + 1), StageKind::ptq, {{"quant.overrides", s.overrides}}},
        bits,
        bits,
        seed};
    const SweepRecord r =
        run_one(config, candidate, m.runs.fp32_file, config.output_dir + "/runs/" + candidate.name()).record;
    s.ptq_accuracy = r.error.empty() ? r.accuracy : 0;
    s.tried.push_back({{"layers_at_8_bits", k + 1}, {"ptq_accuracy", s.ptq_accuracy}});
    std::fprintf(stderr, "suggestion: %zu layer(s) at 8 bits -> PTQ %.2f%% (target %.2f%%)\n", k + 1,
                 100 * s.ptq_accuracy, 100 * target);
  }
  nlohmann::json suggested = config.source;
  suggested.erase("sensitivity");
  apply_override(suggested, "quant.weight.bits=" + std::to_string(bits));
  apply_override(suggested, "quant.activation.bits=" + std::to_string(bits));
  apply_override(suggested, "quant.overrides=" + s.overrides.dump());
  apply_override(suggested, "quant.fp32_checkpoint=" + nlohmann::json(m.runs.fp32_file).dump());
  apply_override(suggested, "output.dir=" + nlohmann::json(config.output_dir + "/suggested").dump());
  write_file_atomically(config.output_dir + "/suggested.json", suggested.dump(2) + "\n");
  // QAT on the suggestion, as a user would run it.
  const PlannedRun qat{
      {"suggested_qat", StageKind::qat, {{"quant.overrides", s.overrides}}}, bits, bits, seed};
  const std::string qat_dir = config.output_dir + "/runs/" + qat.name();
  s.qat = run_one(config, qat, m.runs.fp32_file, qat_dir).record;
  if (std::filesystem::exists(qat_dir + "/model_qat.qfm"))
    s.model_bytes = static_cast<int64_t>(std::filesystem::file_size(qat_dir + "/model_qat.qfm"));
  return s;
}

}  // namespace

std::vector<LayerSensitivity> run_sensitivity(const RunConfig& config, bool resume, double target_accuracy) {
  const int bits = config.sensitivity.bits;
  nn::ModulePtr float_model = build_model(config, config.train.seed);
  const std::vector<Candidate> layers = candidates(*float_model);
  const std::vector<PlannedRun> plan =
      plan_sensitivity(layers, bits, static_cast<int64_t>(config.train.seed));
  const PlanResult runs = execute_plan(config, plan, resume, "sensitivity_runs",
                                       [](const std::vector<SweepRecord>&, double) { return std::string(); });
  // Under mpirun the planned runs were spread over the ranks; the rest is rank 0's, alone.
  if (!ProcessGroup::current().is_root()) return {};
  const UseGroup alone(ProcessGroup::solo());
  const Measurements m{config, plan, runs};
  std::vector<LayerSensitivity> measured = measure(m, layers, bits);
  const nlohmann::json table = report(measured, bits, runs.fp32_accuracy, m.accuracy_of("all"));
  const double target = target_accuracy > 0                      ? target_accuracy
                        : config.sensitivity.target_accuracy > 0 ? config.sensitivity.target_accuracy
                                                                 : runs.fp32_accuracy - 0.01;
  const Suggestion s = suggest(config, measured, m, bits, target);
  const auto fp32_bytes = static_cast<int64_t>(std::filesystem::file_size(runs.fp32_file));
  std::printf(
      "\nsuggested mixed precision for %.2f%%: %zu layer(s) at 8 bits, the rest at %d bits -> "
      "%s/suggested.json\n",
      100 * target, s.overrides.size(), bits, config.output_dir.c_str());
  std::printf(
      "  PTQ %.2f%%; QAT (qforge qat %s/suggested.json) %.2f%%, integer model %lld bytes (fp32 file %lld)\n",
      100 * s.ptq_accuracy, config.output_dir.c_str(), s.qat.error.empty() ? 100 * s.qat.accuracy : 0.0,
      static_cast<long long>(s.model_bytes), static_cast<long long>(fp32_bytes));
  const nlohmann::json suggestion{
      {"target_accuracy", target},
      {"overrides", s.overrides},
      {"tried", s.tried},
      {"qat_accuracy", s.qat.error.empty() ? nlohmann::json(s.qat.accuracy) : nlohmann::json()},
      {"model_bytes", s.model_bytes}};
  write_file_atomically(config.output_dir + "/sensitivity.json",
                        nlohmann::json{{"bits", bits},
                                       {"fp32_accuracy", runs.fp32_accuracy},
                                       {"all_quantized_accuracy", m.accuracy_of("all")},
                                       {"layers", table},
                                       {"suggestion", suggestion}}
                                .dump(1) +
                            "\n");
  write_file_atomically(
      config.output_dir + "/sensitivity.svg",
      sensitivity_svg(measured, runs.fp32_accuracy, bits, config.file + ": " + config.model.name));
  return measured;
}

}  // namespace qforge::train
