#include "train/optimizer.h"

#include <cmath>

#include "core/ops/elementwise.h"

namespace qforge::train {

void Optimizer::zero_grad() {
  for (Tensor& p : parameters_) p.zero_grad();
}

Sgd::Sgd(std::vector<Tensor> parameters, const OptimizerConfig& config)
    : Optimizer(std::move(parameters)), config_(config), momentum_buffers_(parameters_.size()) {
  learning_rate_ = config.lr;
}

void Sgd::step() {
  const float lr = static_cast<float>(learning_rate_), momentum = static_cast<float>(config_.momentum);
  const float weight_decay = static_cast<float>(config_.weight_decay);
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    Tensor& p = parameters_[i];
    Tensor grad = p.grad();
    if (!grad.defined()) continue;
    float* w = p.data();
    const float* g = grad.data();
    const int64_t n = p.numel();
    if (momentum == 0.0f) {
      for (int64_t k = 0; k < n; ++k) w[k] -= lr * (g[k] + weight_decay * w[k]);
      continue;
    }
    const bool is_first = !momentum_buffers_[i].defined();
    if (is_first) momentum_buffers_[i] = Tensor::empty(p.shape());
    float* buf = momentum_buffers_[i].data();
    for (int64_t k = 0; k < n; ++k) {
      float d = g[k] + weight_decay * w[k];
      buf[k] = is_first ? d : momentum * buf[k] + d;
      w[k] -= lr * (config_.nesterov ? d + momentum * buf[k] : buf[k]);
    }
  }
}

TensorMap Sgd::state() const {
  TensorMap state;
  for (std::size_t i = 0; i < momentum_buffers_.size(); ++i)
    if (momentum_buffers_[i].defined()) state["momentum." + std::to_string(i)] = momentum_buffers_[i];
  return state;
}

void Sgd::load_state(const TensorMap& state) {
  for (std::size_t i = 0; i < momentum_buffers_.size(); ++i) {
    auto it = state.find("momentum." + std::to_string(i));
    momentum_buffers_[i] = it == state.end() ? Tensor() : it->second.clone();
    QF_CHECK(!momentum_buffers_[i].defined() || momentum_buffers_[i].shape() == parameters_[i].shape(),
             "optimizer state: momentum buffer ", i, " has shape ", momentum_buffers_[i].shape(),
             ", parameter has ", parameters_[i].shape());
  }
}

Adam::Adam(std::vector<Tensor> parameters, const OptimizerConfig& config)
    : Optimizer(std::move(parameters)), config_(config) {
  learning_rate_ = config.lr;
  for (const Tensor& p : parameters_) {
    first_moments_.push_back(Tensor::zeros(p.shape()));
    second_moments_.push_back(Tensor::zeros(p.shape()));
  }
}

void Adam::step() {
  ++steps_;
  const double beta1 = config_.beta1, beta2 = config_.beta2;
  const float step_size = static_cast<float>(learning_rate_ / (1 - std::pow(beta1, steps_)));
  const float second_correction = static_cast<float>(1 / std::sqrt(1 - std::pow(beta2, steps_)));
  const float eps = static_cast<float>(config_.eps), weight_decay = static_cast<float>(config_.weight_decay);
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    Tensor grad = parameters_[i].grad();
    if (!grad.defined()) continue;
    float* w = parameters_[i].data();
    float* m = first_moments_[i].data();
    float* v = second_moments_[i].data();
    const float* g = grad.data();
    for (int64_t k = 0; k < parameters_[i].numel(); ++k) {
      float d = g[k] + weight_decay * w[k];
      m[k] = b1 * m[k] + (1 - b1) * d;
      v[k] = b2 * v[k] + (1 - b2) * d * d;
      w[k] -= step_size * m[k] / (std::sqrt(v[k]) * second_correction + eps);
    }
  }
}

TensorMap Adam::state() const {
  TensorMap state{
      {"steps", Tensor::from_data<int32_t>({1}, std::vector<int32_t>{static_cast<int32_t>(steps_)})}};
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    state["m." + std::to_string(i)] = first_moments_[i];
    state["v." + std::to_string(i)] = second_moments_[i];
  }
  return state;
}

void Adam::load_state(const TensorMap& state) {
  QF_CHECK(state.count("steps"), "optimizer state: missing Adam step count");
  steps_ = state.at("steps").data_as<int32_t>()[0];
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    for (auto [prefix, target] :
         {std::pair{"m.", &first_moments_[i]}, std::pair{"v.", &second_moments_[i]}}) {
      auto it = state.find(prefix + std::to_string(i));
      QF_CHECK(it != state.end() && it->second.shape() == parameters_[i].shape(),
               "optimizer state: missing or ", "mis-shaped Adam moment ", prefix, i);
      target->copy_from(it->second);
    }
  }
}

std::unique_ptr<Optimizer> make_optimizer(std::vector<Tensor> parameters, const OptimizerConfig& config) {
  if (config.type == "adam") return std::make_unique<Adam>(std::move(parameters), config);
  return std::make_unique<Sgd>(std::move(parameters), config);
}

double scheduled_learning_rate(const ScheduleConfig& schedule, double base_lr, double epoch,
                               int64_t total_epochs) {
  if (schedule.warmup_epochs > 0 && epoch < schedule.warmup_epochs)
    return base_lr * epoch / schedule.warmup_epochs;
  if (schedule.type == "step")
    return base_lr * std::pow(schedule.gamma, std::floor(epoch / schedule.step_size));
  if (schedule.type == "cosine") {
    const double span = std::max(1e-9, total_epochs - schedule.warmup_epochs);
    const double progress = std::min(1.0, (epoch - schedule.warmup_epochs) / span);
    return schedule.min_lr + (base_lr - schedule.min_lr) * 0.5 * (1 + std::cos(M_PI * progress));
  }
  return base_lr;
}

}  // namespace qforge::train
