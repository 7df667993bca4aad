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
  if (info.is_calibrator && !spec.scheme.symmetric) {  // Note [Affine mse]: mse also searches affine ranges
    if (spec.observer.kind != ObserverKind::mse)
      reader.fail(
          "observer",
          "calibrators max, percentile and entropy give symmetric parameters; set \"symmetric\": true "
          "(mse also searches affine ranges, per tensor)");
    if (per_channel)
      reader.fail("observer",
                  "mse searches affine ranges per tensor; set \"symmetric\": true for mse per channel");
  }
  if (spec.observer.kind == ObserverKind::percentile) {
    spec.observer.percentile = reader.number("percentile", spec.observer.percentile);
    if (spec.observer.percentile <= 0 || spec.observer.percentile > 100)
      reader.fail("percentile", "expected a number in (0, 100]");
  }
  spec.is_learnable = reader.boolean("learnable", spec.is_learnable);
  if (spec.is_learnable && spec.scheme.symmetric && !spec.scheme.is_signed)
    reader.fail("learnable", "a learnable quantizer must be signed-symmetric or affine");
  // Binary weights (Note [Binary weights]): 1 bit, levels ±α; the scale is a statistic of the
  // weights (or learned), so no observer, range or sign option applies to them.
  spec.scheme.binary = reader.boolean("binary", false);
  if (spec.scheme.binary) {
    if (!is_weight) reader.fail("binary", "binary applies to weights; 1-bit activations are {\"bits\": 1}");
    if (spec.scheme.bits != 1)
      reader.fail("bits", "a binary quantizer has 1 bit, got " + std::to_string(spec.scheme.bits));
    if (spec.scheme.reduce_range || spec.scheme.narrow_range)
      reader.fail("binary", "reduce_range and narrow_range do not apply to binary weights");
    spec.scheme.is_signed = true;
    spec.scheme.symmetric = true;
  }
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

QuantSpec read_quant_spec(ConfigReader& reader) {
  QuantSpec spec;
  QConfig& d = spec.defaults;
  spec.mode = reader.choice("mode", "static", {"static", "dynamic"});
  d.weight = parse_quantizer(reader.object("weight"), d.weight, true);
  d.activation = parse_quantizer(reader.object("activation"), d.activation, false);
  const nlohmann::json& overrides = reader.raw("overrides");
  if (!overrides.is_null() && !overrides.is_array()) reader.fail("overrides", "expected an array of objects");
  for (std::size_t i = 0; overrides.is_array() && i < overrides.size(); ++i) {
    ConfigReader item(overrides[i], reader.file(), reader.key_path("overrides." + std::to_string(i)));
    QConfigOverride o;
    o.name = item.string("name", "");
    o.type = item.string("type", "");
    if (o.name.empty() == o.type.empty()) item.fail("name", "give exactly one of \"name\" or \"type\"");
    o.qconfig = parse_qconfig(item, d);
    item.finish();
    spec.overrides.push_back(o);
  }
  return spec;
}

QuantSpec parse_quant_spec(const nlohmann::json& section, const std::string& file) {
  ConfigReader reader(section, file, "quant");
  QuantSpec spec = read_quant_spec(reader);
  reader.finish();
  return spec;
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
