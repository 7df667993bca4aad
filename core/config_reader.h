// ConfigReader: typed, path-aware access to one JSON object of a config file. Every
// read names its key; finish() rejects keys nobody read. Errors name the file and
// the key path and say what was expected:
//   configs/lenet.json: train.optimizer.lr: expected a number, got "fast"
//   configs/lenet.json: train.optimzer: unknown key (known: batch_size, epochs, ...)
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace qforge {

class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& object, std::string file, std::string path);
  // A file header written by qforge (a model's metadata): errors read
  // "model.qf: corrupt metadata (epochs_done): expected an integer, got "one"".
  static ConfigReader metadata(const nlohmann::json& object, std::string file);

  double number(const std::string& key, double fallback);
  int64_t integer(const std::string& key, int64_t fallback, int64_t min_value = INT64_MIN);
  bool boolean(const std::string& key, bool fallback);
  std::string string(const std::string& key, const std::string& fallback);
  // A string that must be one of `choices`.
  std::string choice(const std::string& key, const std::string& fallback,
                     const std::vector<std::string>& choices);
  std::vector<double> numbers(const std::string& key, const std::vector<double>& fallback);
  bool has(const std::string& key) const { return object_.contains(key); }
  // A nested object (empty when absent) as a reader of its own.
  ConfigReader object(const std::string& key);
  const nlohmann::json& raw(const std::string& key);  // any value, marked as read
  void finish() const;                                // throws on keys never read

  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  std::string key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const std::string& file() const { return file_; }

 private:
  const nlohmann::json* find(const std::string& key);
  nlohmann::json object_;
  std::string file_, path_;
  std::set<std::string> read_;
  bool is_metadata_ = false;
};

// Applies one "--set a.b.c=value" override; value is parsed as JSON, else taken as a string.
void apply_override(nlohmann::json& config, const std::string& assignment);

// Strict JSON for configs and file headers: errors name `file`; objects may not repeat a
// key (JSON parsers silently keep the last); nesting deeper than max_depth and numbers
// out of double's range are errors, not crashes or infinities.
inline constexpr int kMaxJsonDepth = 64;
inline constexpr std::size_t kMaxConfigBytes = 1 << 20;
nlohmann::json parse_json(std::string_view text, const std::string& file, int max_depth = kMaxJsonDepth);

}  // namespace qforge
