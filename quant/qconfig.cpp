#include "quant/qconfig.h"

namespace qforge::quant {

namespace {

QuantizerSpec parse_quantizer(ConfigReader reader, QuantizerSpec spec, bool is_weight) {
  spec.scheme.bits = static_cast<int>(reader.integer("bits", spec.scheme.bits, 1));
  if (spec.scheme.bits > 16) reader.fail("bits", "expected 1..16, got " + std::to_string(spec.scheme.bits));
  spec.scheme.is_signed = reader.boolean("signed", spec.scheme.is_signed);
  spec.scheme.symmetric = reader.boolean("symmetric", spec.scheme.symmetric);
  const bool per_channel = reader.boolean("per_channel", spec.scheme.axis >= 0);
  if (per_channel && !is_weight) reader.fail("per_channel", "activations are quantized per tensor");
  spec.scheme.axis = per_channel ? 0 : -1;
  spec.scheme.reduce_range = reader.boolean("reduce_range", spec.scheme.reduce_range);
  spec.scheme.narrow_range = reader.boolean("narrow_range", spec.scheme.narrow_range);
  std::vector<std::string> names;
  for (const ObserverKindInfo& info : observer_kinds()) names.emplace_back(info.name);
  const std::string name = reader.choice("observer", observer_info(spec.observer.kind).name, names);
  spec.observer.kind = *observer_kind_named(name);
  const ObserverKindInfo& info = observer_info(spec.observer.kind);
  if (per_channel && !info.allows_per_channel) reader.fail("observer", name + " calibration is per tensor");
  if (info.is_calibrator && !spec.scheme.symmetric)
    reader.fail("observer",
                "calibrators (max, percentile, mse, entropy) give symmetric parameters; set "
                "\"symmetric\": true");
  if (spec.observer.kind == ObserverKind::percentile) {
    spec.observer.percentile = reader.number("percentile", spec.observer.percentile);
    if (spec.observer.percentile <= 0 || spec.observer.percentile > 100)
      reader.fail("percentile", "expected a number in (0, 100]");
  }
  spec.is_learnable = reader.boolean("learnable", spec.is_learnable);
  if (spec.is_learnable && spec.scheme.symmetric && !spec.scheme.is_signed)
    reader.fail("learnable", "a learnable quantizer must be signed-symmetric or affine");
  reader.finish();
  return spec;
}

QConfig parse_qconfig(ConfigReader& reader, const QConfig& base) {
  QConfig q = base;
  q.is_float = reader.boolean("float", false);
  if (reader.has("weight")) q.weight = parse_quantizer(reader.object("weight"), base.weight, true);
  if (reader.has("activation"))
    q.activation = parse_quantizer(reader.object("activation"), base.activation, false);
  return q;
}

}  // namespace

QuantConfig parse_quant_config(const nlohmann::json& section, const std::string& file) {
  QuantConfig config;
  QConfig& d = config.defaults;
  d.weight.scheme = {.bits = 8, .is_signed = true, .symmetric = true, .axis = 0};
  d.weight.observer = {ObserverKind::minmax};
  d.activation.scheme = {.bits = 8, .is_signed = false, .symmetric = false};
  d.activation.observer = {ObserverKind::moving_average};
  ConfigReader reader(section, file, "quant");
  config.mode = reader.choice("mode", "static", {"static", "dynamic"});
  d.weight = parse_quantizer(reader.object("weight"), d.weight, true);
  d.activation = parse_quantizer(reader.object("activation"), d.activation, false);
  const nlohmann::json& overrides = reader.raw("overrides");
  if (!overrides.is_null() && !overrides.is_array()) reader.fail("overrides", "expected an array of objects");
  for (std::size_t i = 0; overrides.is_array() && i < overrides.size(); ++i) {
    ConfigReader item(overrides[i], file, "quant.overrides." + std::to_string(i));
    QConfigOverride o;
    o.name = item.string("name", "");
    o.type = item.string("type", "");
    if (o.name.empty() == o.type.empty()) item.fail("name", "give exactly one of \"name\" or \"type\"");
    o.qconfig = parse_qconfig(item, d);
    item.finish();
    config.overrides.push_back(o);
  }
  ConfigReader qat = reader.object("qat");
  config.qat.epochs = qat.integer("epochs", 0, 0);
  config.qat.lr = qat.number("lr", 0.0);
  if (config.qat.lr < 0) qat.fail("lr", "expected a positive number");
  config.qat.freeze_observers_epoch = qat.integer("freeze_observers_epoch", -1, -1);
  config.qat.freeze_bn_epoch = qat.integer("freeze_bn_epoch", -1, -1);
  config.qat.calibration_batches = qat.integer("calibration_batches", 0, 0);
  if (config.qat.freeze_observers_epoch == 0 && config.qat.calibration_batches == 0)
    qat.fail(
        "freeze_observers_epoch",
        "0 freezes observers before they see any data; set quant.qat.calibration_batches to calibrate first");
  ConfigReader distillation = qat.object("distillation");
  config.qat.distillation_weight = distillation.number("weight", 0.0);
  if (config.qat.distillation_weight < 0 || config.qat.distillation_weight > 1)
    distillation.fail("weight", "expected a number in [0, 1]");
  config.qat.distillation_temperature = distillation.number("temperature", 4.0);
  if (!(config.qat.distillation_temperature > 0))
    distillation.fail("temperature", "expected a positive number");
  distillation.finish();
  qat.finish();
  ConfigReader ptq = reader.object("ptq");
  config.ptq.calibration_batches = ptq.integer("calibration_batches", 32, 1);
  ptq.finish();
  config.fp32_checkpoint = reader.string("fp32_checkpoint", "");
  reader.finish();
  return config;
}

namespace {
bool matches(const QConfigOverride& o, const std::string& name, const std::string& type) {
  return (!o.name.empty() && o.name == name) || (!o.type.empty() && o.type == type);
}
}  // namespace

QConfig QuantSpec::for_module(const std::string& name, const std::string& type) const {
  QConfig q = defaults;
  for (const QConfigOverride& o : overrides)
    if (matches(o, name, type)) q = o.qconfig;
  return q;
}

bool QuantSpec::has_override(const std::string& name, const std::string& type) const {
  for (const QConfigOverride& o : overrides)
    if (matches(o, name, type)) return true;
  return false;
}

}  // namespace qforge::quant
