// Layers without parameters: ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten,
// Dropout — each a Module wrapper around one core op, so that a model is a tree of
// modules that prepare/convert can walk and replace.
#pragma once

#include "core/ops.h"
#include "nn/module.h"

namespace qforge::nn {

// Identity: what a fused-away layer becomes, so its siblings keep their names.
class Identity : public Module {
 public:
  Tensor forward(const Tensor& input) override { return input; }
  std::string type_name() const override { return "Identity"; }
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& input) override { return relu(input); }
  std::string type_name() const override { return "ReLU"; }
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const Pool2dOptions& options) : options(options) {}
  Tensor forward(const Tensor& input) override { return max_pool2d(input, options); }
  std::string type_name() const override { return "MaxPool2d"; }
  Pool2dOptions options;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const Pool2dOptions& options) : options(options) {}
  Tensor forward(const Tensor& input) override { return avg_pool2d(input, options); }
  std::string type_name() const override { return "AvgPool2d"; }
  Pool2dOptions options;
};

class AdaptiveAvgPool2d : public Module {
 public:
  AdaptiveAvgPool2d(int64_t out_height, int64_t out_width) : out_height(out_height), out_width(out_width) {}
  Tensor forward(const Tensor& input) override { return adaptive_avg_pool2d(input, out_height, out_width); }
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  int64_t out_height, out_width;
};

class Flatten : public Module {
 public:
  Tensor forward(const Tensor& input) override { return flatten(input, 1); }
  std::string type_name() const override { return "Flatten"; }
};

class Dropout : public Module {
 public:
  Dropout(float p, uint64_t seed) : p(p), generator_(seed) {}
  Tensor forward(const Tensor& input) override { return dropout(input, p, is_training(), generator_); }
  std::string type_name() const override { return "Dropout"; }
  float p;

 protected:
  nlohmann::json own_random_state() const override { return generator_.state(); }
  void load_own_random_state(const nlohmann::json& state) override {
    QF_CHECK(state.is_string(), "Dropout: expected a generator state");
    generator_.set_state(state.get<std::string>());
  }

 private:
  Generator generator_;
};

}  // namespace qforge::nn
