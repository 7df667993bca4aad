#include "train/benchmark.h"

#include <chrono>

#include "core/flop_counter.h"
#include "core/ops.h"
#include "nn/zoo.h"
#include "quant/prepare.h"
#include "train/optimizer.h"

namespace qforge::train {

namespace {
using Clock = std::chrono::steady_clock;

// Runs `step` at least 5 times and for at least min_seconds; returns seconds per step.
template <typename Step>
double time_steps(Step step, double min_seconds) {
  for (int i = 0; i < 3; ++i) step();  // warm-up: primitive creation, allocator
  int64_t steps = 0;
  Clock::time_point start = Clock::now();
  double elapsed = 0;
  while (steps < 5 || elapsed < min_seconds) {
    step();
    ++steps;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return elapsed / steps;
}
}  // namespace

nlohmann::json benchmark_model(const std::string& model_name, const BenchmarkOptions& options) {
  Generator generator(0);
  nn::ModulePtr model = nn::build_zoo_model(model_name, generator);
  Tensor images = Tensor::randn({options.batch, 1, 28, 28}, generator);
  Tensor labels = Tensor::empty({options.batch}, DType::s32);
  for (int64_t i = 0; i < options.batch; ++i)
    labels.data_as<int32_t>()[i] = static_cast<int32_t>(generator.below(10));
  auto optimizer = make_optimizer(model->parameters(), OptimizerConfig{.lr = 0.01});
  model->train();
  auto train_step = [&] {
    Tensor loss = cross_entropy(model->forward(images), labels);
    optimizer->zero_grad();
    loss.backward();
    optimizer->step();
  };
  double step_flops = 0;
  {
    FlopCounter counter;
    train_step();
    step_flops = counter.flops();
  }
  const double train_seconds = time_steps(train_step, options.min_seconds);

  // QAT: the same step on the prepared model (default fbgemm recipe), fresh weights.
  double qat_seconds = 0;
  {
    Generator qat_generator(0);
    auto prepared = quant::prepare_qat(nn::build_zoo_model(model_name, qat_generator),
                                       quant::parse_quant_config(nullptr, "bench"));
    auto qat_optimizer = make_optimizer(prepared->parameters(), OptimizerConfig{.lr = 0.01});
    prepared->train();
    qat_seconds = time_steps(
        [&] {
          Tensor loss = cross_entropy(prepared->forward(images), labels);
          qat_optimizer->zero_grad();
          loss.backward();
          qat_optimizer->step();
        },
        options.min_seconds);
  }

  model->eval();
  Tensor infer_images = Tensor::randn({options.infer_batch, 1, 28, 28}, generator);
  const double infer_seconds = time_steps(
      [&] {
        NoGradGuard no_grad;
        model->forward(infer_images);
      },
      options.min_seconds);

  const double train_gflops = step_flops / train_seconds / 1e9;
  nlohmann::json row{{"model", model_name},
                     {"batch", options.batch},
                     {"threads", num_threads()},
                     {"fp32_train_images_per_second", options.batch / train_seconds},
                     {"fp32_infer_images_per_second", options.infer_batch / infer_seconds},
                     {"infer_batch", options.infer_batch},
                     {"fp32_train_gflops", train_gflops},
                     {"train_step_gflop", step_flops / 1e9}};
  if (qat_seconds > 0) {
    row["qat_train_images_per_second"] = options.batch / qat_seconds;
    row["qat_to_fp32_train_ratio"] = train_seconds / qat_seconds;
  }
  if (options.peak_gflops > 0) {
    row["peak_gflops"] = options.peak_gflops;
    row["fp32_train_fraction_of_peak"] = train_gflops / options.peak_gflops;
  }
  return row;
}

}  // namespace qforge::train
