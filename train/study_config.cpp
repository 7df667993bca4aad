#include "train/study_config.h"

#include <algorithm>
#include <cmath>

#include "core/config_reader.h"
#include "quant/observer.h"

namespace qforge::train {

namespace {

SweepMethod builtin_method(const std::string& name, const ConfigReader& reader) {
  if (name == "ptq") return {"ptq", StageKind::ptq};
  if (name == "qat") return {"qat", StageKind::qat};
  if (name == "lsq")
    return {"lsq",
            StageKind::qat,
            {{"quant.weight.learnable", true},
             {"quant.activation.learnable", true},
             {"quant.activation.observer", "histogram"}}};
  reader.fail("methods",
              "unknown method \"" + name + "\" (built in: ptq, qat, lsq; or an object with name, kind, set)");
}

// "bits": whole widths in 1..16, at least one; `fallback` when the key is absent.
std::vector<int> parse_bits(ConfigReader& reader, std::vector<int> fallback) {
  if (!reader.has("bits")) {
    reader.raw("bits");  // marks the key as known
    return fallback;
  }
  std::vector<int> bits;
  for (double b : reader.numbers("bits", {})) {
    if (b != std::floor(b) || b < 1 || b > 16) reader.fail("bits", "expected whole widths in 1..16");
    bits.push_back(static_cast<int>(b));
  }
  if (bits.empty()) reader.fail("bits", "expected at least one width");
  return bits;
}

// calibrate_compare.ptq: the PTQ variants each calibrator runs with (absent: one, the config
// as it is). A string names a built-in one (nearest: equalize, bias_correction and adaround
// off; equalize, bias_correction, adaround: that quant.ptq key on, over the config); an
// object has a name and its own overrides. The calibrator's keys stay the calibrator's.
std::vector<SweepMethod> parse_ptq_variants(ConfigReader& reader, const std::string& file) {
  const nlohmann::json& list = reader.raw("ptq");
  if (list.is_null()) return {{"", StageKind::ptq}};
  if (!list.is_array() || list.empty())
    reader.fail("ptq",
                "expected a non-empty array of PTQ variants (nearest, equalize, bias_correction, "
                "adaround, or {\"name\", \"set\"})");
  std::vector<SweepMethod> variants;
  for (std::size_t i = 0; i < list.size(); ++i) {
    SweepMethod v{"", StageKind::ptq};
    if (list[i].is_string()) {
      v.name = list[i].get<std::string>();
      if (v.name == "equalize" || v.name == "bias_correction" || v.name == "adaround")
        v.set = {{"quant.ptq." + v.name, true}};
      else if (v.name == "nearest")
        v.set = {{"quant.ptq.equalize", false},
                 {"quant.ptq.bias_correction", false},
                 {"quant.ptq.adaround", false}};
      else
        reader.fail("ptq", "unknown PTQ variant \"" + v.name +
                               "\" (built in: nearest, equalize, bias_correction, adaround; or an object "
                               "with name and set)");
    } else {
      ConfigReader item(list[i], file, "calibrate_compare.ptq." + std::to_string(i));
      v.name = item.string("name", "");
      v.set = item.raw("set");
      if (v.name.empty()) item.fail("name", "a PTQ variant needs a name");
      if (v.set.is_null()) v.set = nlohmann::json::object();
      if (!v.set.is_object()) item.fail("set", "expected an object of \"a.b.c\": value overrides");
      for (const char* own : {"quant.activation.observer", "quant.activation.percentile",
                              "quant.ptq.calibration_batches", "quant.weight.bits", "quant.activation.bits"})
        if (v.set.contains(own))
          item.fail("set",
                    std::string(own) + " is the study's own (calibrate_compare.methods, .images, .bits)");
      item.finish();
    }
    for (const SweepMethod& earlier : variants)
      if (earlier.name == v.name) reader.fail("ptq", "PTQ variant \"" + v.name + "\" appears twice");
    variants.push_back(v);
  }
  return variants;
}

std::vector<SweepMethod> parse_methods(ConfigReader& reader, const std::string& file) {
  std::vector<SweepMethod> methods;
  const nlohmann::json& list = reader.raw("methods");
  if (list.is_null()) {
    for (const char* name : {"ptq", "qat", "lsq"}) methods.push_back(builtin_method(name, reader));
    return methods;
  }
  if (!list.is_array() || list.empty()) reader.fail("methods", "expected a non-empty array");
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (list[i].is_string()) {
      methods.push_back(builtin_method(list[i].get<std::string>(), reader));
      continue;
    }
    ConfigReader item(list[i], file, "sweep.methods." + std::to_string(i));
    SweepMethod m{item.string("name", ""),
                  item.choice("kind", "qat", {"ptq", "qat"}) == "ptq" ? StageKind::ptq : StageKind::qat,
                  item.raw("set")};
    if (m.name.empty()) item.fail("name", "a method needs a name");
    if (m.set.is_null()) m.set = nlohmann::json::object();
    if (!m.set.is_object()) item.fail("set", "expected an object of \"a.b.c\": value overrides");
    m.bits = parse_bits(item, {});
    item.finish();
    methods.push_back(m);
  }
  for (std::size_t i = 0; i < methods.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (methods[i].name == methods[j].name)
        reader.fail("methods", "method \"" + methods[i].name + "\" appears twice");
  return methods;
}

}  // namespace

SweepConfig parse_sweep_config(const nlohmann::json& section, const std::string& file) {
  ConfigReader reader(section, file, "sweep");
  SweepConfig sweep;
  sweep.bits = parse_bits(reader, sweep.bits);
  const std::string apply = reader.choice("apply", "both", {"both", "weights", "activations"});
  sweep.apply = apply == "both"      ? SweepConfig::Apply::both
                : apply == "weights" ? SweepConfig::Apply::weights
                                     : SweepConfig::Apply::activations;
  sweep.fixed_bits = static_cast<int>(reader.integer("fixed_bits", 8, 1));
  if (sweep.fixed_bits > 16) reader.fail("fixed_bits", "expected 1..16");
  sweep.seeds = reader.integer("seeds", 3, 1);
  if (sweep.seeds > 100) reader.fail("seeds", "expected at most 100");
  sweep.methods = parse_methods(reader, file);
  for (const SweepMethod& method : sweep.methods)
    for (int b : method.bits)
      if (std::find(sweep.bits.begin(), sweep.bits.end(), b) == sweep.bits.end())
        reader.fail("methods", "method \"" + method.name + "\" runs at " + std::to_string(b) +
                                   " bits, which sweep.bits does not list");
  reader.finish();
  return sweep;
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
  compare.ptq = parse_ptq_variants(reader, file);
  reader.finish();
  return compare;
}

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

}  // namespace qforge::train
