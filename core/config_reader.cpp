#include "core/config_reader.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "core/error.h"

namespace qforge {

namespace {
// For messages only: a value reached through a `--set` path may hold bytes that are not
// UTF-8, and dump() would throw on them; replacing them keeps the message one Error.
std::string describe(const nlohmann::json& value) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return text.size() > 40 ? text.substr(0, 40) + "..." : text;
}
}  // namespace

ConfigReader::ConfigReader(const nlohmann::json& object, std::string file, std::string path)
    : object_(object.is_null() ? nlohmann::json::object() : object),
      file_(std::move(file)),
      path_(std::move(path)) {
  if (!object_.is_object())
    QF_FAIL(file_, ": ", path_.empty() ? "top level" : path_, ": expected an object, got ",
            describe(object_));
}

ConfigReader ConfigReader::metadata(const nlohmann::json& object, std::string file) {
  if (!object.is_object()) QF_FAIL(file, ": corrupt metadata: expected an object, got ", describe(object));
  ConfigReader reader(object, std::move(file), "");
  reader.is_metadata_ = true;
  return reader;
}

void ConfigReader::fail(const std::string& key, const std::string& message) const {
  if (is_metadata_) QF_FAIL(file_, ": corrupt metadata (", key_path(key), "): ", message);
  QF_FAIL(file_, ": ", key_path(key), ": ", message);
}

const nlohmann::json* ConfigReader::find(const std::string& key) {
  read_.insert(key);
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

double ConfigReader::number(const std::string& key, double fallback) {
  const nlohmann::json* value = find(key);
  if (!value) return fallback;
  if (!value->is_number()) fail(key, "expected a number, got " + describe(*value));
  double result = value->get<double>();
  if (!std::isfinite(result)) fail(key, "expected a finite number");
  return result;
}

int64_t ConfigReader::integer(const std::string& key, int64_t fallback, int64_t min_value) {
  const nlohmann::json* value = find(key);
  if (!value) return fallback;
  if (!value->is_number_integer()) fail(key, "expected an integer, got " + describe(*value));
  int64_t result = value->get<int64_t>();
  if (result < min_value)
    fail(key, "expected an integer >= " + std::to_string(min_value) + ", got " + std::to_string(result));
  return result;
}

bool ConfigReader::boolean(const std::string& key, bool fallback) {
  const nlohmann::json* value = find(key);
  if (!value) return fallback;
  if (!value->is_boolean()) fail(key, "expected true or false, got " + describe(*value));
  return value->get<bool>();
}

std::string ConfigReader::string(const std::string& key, const std::string& fallback) {
  const nlohmann::json* value = find(key);
  if (!value) return fallback;
  if (!value->is_string()) fail(key, "expected a string, got " + describe(*value));
  return value->get<std::string>();
}

std::string ConfigReader::choice(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& choices) {
  std::string value = string(key, fallback);
  std::string known;
  for (const std::string& c : choices) {
    if (c == value) return value;
    known += (known.empty() ? "" : ", ") + c;
  }
  fail(key, "expected one of " + known + ", got \"" + value + "\"");
}

std::vector<double> ConfigReader::numbers(const std::string& key, const std::vector<double>& fallback) {
  const nlohmann::json* value = find(key);
  if (!value) return fallback;
  if (!value->is_array()) fail(key, "expected an array of numbers, got " + describe(*value));
  std::vector<double> out;
  for (const auto& item : *value) {
    if (!item.is_number()) fail(key, "expected an array of numbers, got " + describe(*value));
    out.push_back(item.get<double>());
  }
  return out;
}

ConfigReader ConfigReader::object(const std::string& key) {
  const nlohmann::json* value = find(key);
  if (value && !value->is_object()) fail(key, "expected an object, got " + describe(*value));
  ConfigReader nested(value ? *value : nlohmann::json::object(), file_, key_path(key));
  nested.is_metadata_ = is_metadata_;
  return nested;
}

const nlohmann::json& ConfigReader::raw(const std::string& key) {
  static const nlohmann::json null_value;
  const nlohmann::json* value = find(key);
  return value ? *value : null_value;
}

void ConfigReader::finish() const {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (read_.count(it.key())) continue;
    std::string known;
    for (const std::string& k : read_) known += (known.empty() ? "" : ", ") + k;
    fail(it.key(), "unknown key (known: " + known + ")");
  }
}

nlohmann::json parse_json(std::string_view text, const std::string& file, int max_depth) {
  // The parser's callback sees every key with its depth: one frame per open object (the
  // keys seen, the key being read) finds repeats and names them by path.
  struct Frame {
    std::vector<std::string> keys;
    std::string current;
  };
  std::vector<Frame> frames;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    QF_CHECK(depth <= max_depth, file, ": nested deeper than ", max_depth, " levels");
    if (event == Event::object_start) frames.emplace_back();
    if (event == Event::object_end && !frames.empty()) frames.pop_back();
    if (event == Event::key && !frames.empty()) {
      Frame& frame = frames.back();
      frame.current = parsed.get<std::string>();
      std::string where;
      for (std::size_t i = 0; i + 1 < frames.size(); ++i) where += frames[i].current + ".";
      QF_CHECK(std::find(frame.keys.begin(), frame.keys.end(), frame.current) == frame.keys.end(), file, ": ",
               where, frame.current, ": the key appears twice in one object");
      frame.keys.push_back(frame.current);
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, callback);
  } catch (const nlohmann::json::exception& error) {
    QF_FAIL(file, ": not valid JSON: ", error.what());
  }
}

void apply_override(nlohmann::json& config, const std::string& assignment) {
  const auto equals = assignment.find('=');
  QF_CHECK(equals != std::string::npos && equals > 0, "--set: expected key.path=value, got \"", assignment,
           "\"");
  const std::string path = assignment.substr(0, equals), text = assignment.substr(equals + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;  // a bare word is a string
  // Keys and strings must be valid UTF-8, as they are in a JSON file (dump() checks).
  try {
    (void)nlohmann::json(path).dump();
  } catch (const nlohmann::json::exception&) {
    QF_FAIL("--set: the key path is not valid UTF-8");
  }
  try {
    (void)value.dump();
  } catch (const nlohmann::json::exception&) {
    QF_FAIL("--set: ", path, ": the value is not valid UTF-8");
  }
  nlohmann::json* node = &config;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    QF_CHECK(!key.empty(), "--set: empty key in \"", path, "\"");
    if (!node->is_object()) *node = nlohmann::json::object();
    if (dot == std::string::npos) {
      (*node)[key] = value;
      return;
    }
    node = &(*node)[key];
    start = dot + 1;
  }
}

}  // namespace qforge
