// Optimizers with PyTorch's update rules (torch.optim.SGD, torch.optim.Adam), L2 weight
// decay added to the gradient. State (momentum buffers, Adam moments, step count) is
// exposed as named tensors so checkpoints can save and restore it exactly.
#pragma once

#include <memory>
#include <vector>

#include "core/serialize.h"
#include "core/tensor.h"
#include "train/config.h"

namespace qforge::train {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> parameters) : parameters_(std::move(parameters)) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;  // parameters without a gradient are skipped
  void zero_grad();
  void set_learning_rate(double lr) { learning_rate_ = lr; }
  double learning_rate() const { return learning_rate_; }
  const std::vector<Tensor>& parameters() const { return parameters_; }
  virtual TensorMap state() const = 0;
  virtual void load_state(const TensorMap& state) = 0;

 protected:
  std::vector<Tensor> parameters_;
  double learning_rate_ = 0;
};

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Tensor> parameters, const OptimizerConfig& config);
  //   d = g + wd·p;  buf = momentum·buf + d (buf = d on the first step);
  //   d = nesterov ? d + momentum·buf : buf;  p -= lr·d
  void step() override;
  TensorMap state() const override;
  void load_state(const TensorMap& state) override;

 private:
  OptimizerConfig config_;
  std::vector<Tensor> momentum_buffers_;  // undefined until first used
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> parameters, const OptimizerConfig& config);
  //   g += wd·p;  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²
  //   p -= lr · (m / (1-β1^t)) / (√(v / (1-β2^t)) + eps)
  void step() override;
  TensorMap state() const override;
  void load_state(const TensorMap& state) override;

 private:
  OptimizerConfig config_;
  std::vector<Tensor> first_moments_, second_moments_;
  int64_t steps_ = 0;
};

std::unique_ptr<Optimizer> make_optimizer(std::vector<Tensor> parameters, const OptimizerConfig& config);

// Learning rate at a fractional epoch (epoch + batch/batches): linear warmup from 0
// over warmup_epochs, then none / step / cosine (annealed to min_lr at the end).
double scheduled_learning_rate(const ScheduleConfig& schedule, double base_lr, double epoch,
                               int64_t total_epochs);

}  // namespace qforge::train
