// Small synthetic runs for the train/ tests: an 8x8 two-class IDX dataset and a config
// training a conv-bn-relu-pool-linear layer list on it in a few seconds.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/random.h"
#include "data/idx.h"
#include "tests/temp_folder.h"

namespace qforge::testing {

inline std::string temp_folder(const std::string& name) { return fresh_temp_folder("train_" + name); }

// Two classes of 8x8 images: class 0 bright in the top half, class 1 in the bottom
// half, both with uniform noise. Linearly separable, but not trivially by one pixel.
inline void write_separable_dataset(const std::string& folder, int64_t train_count, int64_t test_count,
                                    int brightness = 100) {
  Generator generator(7);
  for (auto [prefix, count] : {std::pair{"train", train_count}, std::pair{"t10k", test_count}}) {
    std::vector<uint8_t> images(count * 64), labels(count);
    for (int64_t i = 0; i < count; ++i) {
      labels[i] = static_cast<uint8_t>(generator.below(2));
      for (int p = 0; p < 64; ++p) {
        bool is_bright = (p < 32) == (labels[i] == 0);
        images[i * 64 + p] = static_cast<uint8_t>(generator.below(120) + (is_bright ? brightness : 0));
      }
    }
    data::write_idx(folder + "/" + prefix + "-images-idx3-ubyte", {count, 8, 8}, images);
    data::write_idx(folder + "/" + prefix + "-labels-idx1-ubyte", {count}, labels);
  }
}

inline nlohmann::json small_config(const std::string& data_folder, const std::string& out) {
  nlohmann::json config = nlohmann::json::parse(R"({
    "data": {"dataset": "idx", "normalize": {"mean": 0.5, "std": 0.25}},
    "model": {"layers": [
      {"type": "conv2d", "in": 1, "out": 4, "kernel": 3, "padding": 1},
      {"type": "batchnorm2d", "channels": 4}, {"type": "relu"},
      {"type": "maxpool2d", "kernel": 2}, {"type": "flatten"},
      {"type": "linear", "in": 64, "out": 2}]},
    "train": {"epochs": 3, "batch_size": 16, "seed": 5,
              "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9}, "schedule": {"type": "cosine"}}
  })");
  config["data"]["path"] = data_folder;
  config["output"] = {{"dir", out}};
  return config;
}

}  // namespace qforge::testing
