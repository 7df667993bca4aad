#include "train/benchmark.h"

#include <algorithm>
#include <chrono>

#include "core/flop_counter.h"
#include "core/ops.h"
#include "core/profiler.h"
#include "nn/zoo.h"
#include "quant/convert.h"
#include "quant/int8/gemm.h"
#include "quant/onnx/onnx_export.h"
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

namespace {

constexpr int kProfiledSteps = 5;

// Where `step`'s time goes (Note [Op profile]): each (phase, op, shape) with its calls,
// milliseconds and GFLOP/s per step averaged over kProfiledSteps steps after the timed ones,
// its share of the profiled step and, for the ops that count flops, its fraction of
// peak_gflops; largest first.
template <typename Step>
nlohmann::json profile_steps(Step step, double peak_gflops) {
  OpProfiler profiler;
  const auto start = Clock::now();
  for (int i = 0; i < kProfiledSteps; ++i) step();
  const double step_seconds = std::chrono::duration<double>(Clock::now() - start).count() / kProfiledSteps;
  std::vector<OpProfiler::Entry> entries = profiler.entries();
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.seconds > b.seconds; });
  nlohmann::json rows = nlohmann::json::array();
  for (const OpProfiler::Entry& e : entries) {
    const double seconds = e.seconds / kProfiledSteps;
    nlohmann::json row{{"phase", e.phase},    {"op", e.op},
                       {"shape", e.shape},    {"calls", e.calls / kProfiledSteps},
                       {"ms", 1e3 * seconds}, {"share", seconds / step_seconds}};
    if (e.flops > 0 && e.seconds > 0) {
      row["gflops"] = e.flops / e.seconds / 1e9;
      if (peak_gflops > 0) row["fraction_of_peak"] = e.flops / e.seconds / 1e9 / peak_gflops;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

// One training step's seconds (and its flops) for `model` on a fixed batch, and its profile.
struct TrainTiming {
  double seconds = 0, flops = 0;
  nlohmann::json profile;
};
TrainTiming time_training(nn::Module& model, const Tensor& images, const Tensor& labels, double min_seconds,
                          double peak_gflops) {
  auto optimizer = make_optimizer(model.parameters(), OptimizerConfig{.lr = 0.01});
  model.train();
  // The outer scopes hold what no op claims: the modules' glue and the autograd engine.
  auto train_step = [&] {
    Tensor loss;
    {
      const ProfileScope forward("forward", "(between ops)");
      loss = cross_entropy(model.forward(images), labels);
    }
    {
      const ProfileScope zero("optimizer", "zero_grad");
      optimizer->zero_grad();
    }
    {
      const ProfileScope backward("backward", "(engine)");
      loss.backward();
    }
    const ProfileScope update("optimizer", "step");
    optimizer->step();
  };
  TrainTiming timing;
  {
    FlopCounter counter;
    train_step();
    timing.flops = counter.flops();
  }
  timing.seconds = time_steps(train_step, min_seconds);
  timing.profile = profile_steps(train_step, peak_gflops);
  return timing;
}

// Seconds per forward pass without autograd, and the profile of one.
struct InferenceTiming {
  double seconds = 0;
  nlohmann::json profile;
};
InferenceTiming time_inference(nn::Module& model, const Tensor& images, double min_seconds,
                               double peak_gflops = 0) {
  model.eval();
  auto forward = [&] {
    NoGradGuard no_grad;
    const ProfileScope glue("forward", "(between ops)");
    model.forward(images);
  };
  InferenceTiming timing{.seconds = time_steps(forward, min_seconds)};
  if (peak_gflops > 0) timing.profile = profile_steps(forward, peak_gflops);
  return timing;
}

// The QAT model converted to integers: batch seconds, one image's latency, each op's
// share of a batch (averaged over 5 runs). Fields stay 0 (and error says why) when the
// model does not convert.
struct IntegerTiming {
  double seconds = 0, latency = 0;
  nlohmann::json profile = nlohmann::json::array();
  std::string error;
};
IntegerTiming time_integer_model(quant::QatModel& prepared, const Tensor& images, const Tensor& one_image,
                                 double min_seconds) {
  prepared.eval();
  IntegerTiming timing;
  try {
    const quant::int8::IntegerModel integer = quant::convert(prepared, {1, 28, 28});
    timing.seconds = time_steps([&] { integer.forward(images); }, min_seconds);
    timing.latency = time_steps([&] { integer.forward(one_image); }, min_seconds / 4);
    std::vector<double> total(integer.ops().size(), 0.0);
    for (int run = 0; run < 5; ++run) {
      std::vector<double> seconds;
      integer.run_all(images, Backend::fast, &seconds);
      for (std::size_t i = 0; i < seconds.size(); ++i) total[i] += seconds[i] / 5;
    }
    for (std::size_t i = 0; i < total.size(); ++i)
      timing.profile.push_back(
          {{"op", integer.ops()[i]->kind()}, {"layer", integer.ops()[i]->name}, {"ms", 1e3 * total[i]}});
  } catch (const Error& error) {
    timing.error = error.what();
  }
  return timing;
}

}  // namespace

nlohmann::json benchmark_model(const std::string& model_name, const BenchmarkOptions& options) {
  Generator generator(0);
  nn::ModulePtr model = nn::build_zoo_model(model_name, generator);
  Tensor images = Tensor::randn({options.batch, 1, 28, 28}, generator);
  Tensor labels = Tensor::empty({options.batch}, DType::s32);
  for (int64_t i = 0; i < options.batch; ++i)
    labels.data_as<int32_t>()[i] = static_cast<int32_t>(generator.below(10));
  const TrainTiming train = time_training(*model, images, labels, options.min_seconds, options.peak_gflops);

  // QAT: the same step on the prepared model (default fbgemm recipe), fresh weights.
  Generator qat_generator(0);
  auto prepared = quant::prepare_qat(nn::build_zoo_model(model_name, qat_generator), quant::QuantSpec{});
  const TrainTiming qat = time_training(*prepared, images, labels, options.min_seconds, options.peak_gflops);
  const double qat_seconds = qat.seconds;

  Tensor infer_images = Tensor::randn({options.infer_batch, 1, 28, 28}, generator);
  Tensor one_image = Tensor::randn({1, 1, 28, 28}, generator);
  const InferenceTiming infer =
      time_inference(*model, infer_images, options.min_seconds, options.peak_gflops);
  const double infer_seconds = infer.seconds;
  const double fp32_latency = time_inference(*model, one_image, options.min_seconds / 4).seconds;
  // One image's multiply-adds in its convolutions, linear and LSTM layers, as fp32 inference
  // counts them: the integer model runs the same products, so these are its ops too.
  double ops_per_image = 0;
  {
    NoGradGuard no_grad;
    FlopCounter counter;
    model->forward(one_image);
    ops_per_image = counter.flops();
  }
  // int8: the QAT model above (its observers have seen the QAT steps' batches), converted.
  const IntegerTiming int8 = time_integer_model(*prepared, infer_images, one_image, options.min_seconds);
  // Dynamic int8 (PyTorch's quantize_dynamic: int8 weights, activations quantized per call),
  // the only int8 path PyTorch has for an LSTM, so the LSTM is compared on it too.
  double dynamic_seconds = 0, dynamic_latency = 0;
  if (model_name == "lstm") {
    const quant::int8::IntegerModel dynamic =
        quant::convert_dynamic(*model, quant::QuantSpec{}.defaults.weight, {1, 28, 28});
    dynamic_seconds = time_steps([&] { dynamic.forward(infer_images); }, options.min_seconds);
    dynamic_latency = time_steps([&] { dynamic.forward(one_image); }, options.min_seconds / 4);
  }

  const double train_gflops = train.flops / train.seconds / 1e9;
  nlohmann::json row{{"model", model_name},
                     {"batch", options.batch},
                     {"threads", num_threads()},
                     {"fp32_train_images_per_second", options.batch / train.seconds},
                     {"fp32_infer_images_per_second", options.infer_batch / infer_seconds},
                     {"infer_batch", options.infer_batch},
                     {"fp32_train_gflops", train_gflops},
                     {"train_step_gflop", train.flops / 1e9},
                     {"fp32_latency_ms", 1e3 * fp32_latency},
                     {"qat_train_images_per_second", options.batch / qat_seconds},
                     {"qat_to_fp32_train_ratio", train.seconds / qat_seconds},
                     {"fp32_train_profile", train.profile},
                     {"fp32_infer_profile", infer.profile},
                     {"qat_train_profile", qat.profile}};
  if (int8.seconds > 0) {
    row["int8_infer_images_per_second"] = options.infer_batch / int8.seconds;
    row["int8_to_fp32_infer_ratio"] = infer_seconds / int8.seconds;
    row["int8_latency_ms"] = 1e3 * int8.latency;
    row["int8_isa"] = quant::int8::isa_name(quant::int8::detect_isa());
    row["int8_ops_per_image"] = ops_per_image;
    row["int8_gops"] = ops_per_image * options.infer_batch / int8.seconds / 1e9;
    if (options.int8_peak_gops > 0) {
      row["int8_peak_gops"] = options.int8_peak_gops;
      row["int8_fraction_of_peak"] = row["int8_gops"].get<double>() / options.int8_peak_gops;
    }
    row["int8_profile"] = int8.profile;
  } else {
    row["int8_error"] = int8.error;
  }
  if (dynamic_seconds > 0) {
    row["int8_dynamic_infer_images_per_second"] = options.infer_batch / dynamic_seconds;
    row["int8_dynamic_to_fp32_infer_ratio"] = infer_seconds / dynamic_seconds;
    row["int8_dynamic_latency_ms"] = 1e3 * dynamic_latency;
  }
  if (!options.onnx_dir.empty()) {
    const std::string base = options.onnx_dir + "/" + model_name;
    quant::onnx_io::write_onnx(quant::onnx_io::export_float_onnx(*model, {1, 28, 28}), base + "_fp32.onnx");
    row["onnx_fp32"] = base + "_fp32.onnx";
    prepared->eval();
    const quant::int8::IntegerModel integer =
        model_name == "lstm" ? quant::convert_dynamic(*model, quant::QuantSpec{}.defaults.weight, {1, 28, 28})
                             : quant::convert(*prepared, {1, 28, 28});
    quant::onnx_io::write_onnx(quant::onnx_io::export_integer_onnx(integer), base + "_int8.onnx");
    row["onnx_int8"] = base + "_int8.onnx";
  }
  if (options.peak_gflops > 0) {
    row["peak_gflops"] = options.peak_gflops;
    row["fp32_train_fraction_of_peak"] = train_gflops / options.peak_gflops;
  }
  return row;
}

}  // namespace qforge::train
