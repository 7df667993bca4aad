#include "train/deploy.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/file_io.h"
#include "core/ops.h"
#include "data/data_loader.h"
#include "quant/convert.h"
#include "quant/onnx/onnx_export.h"
#include "train/model_files.h"

namespace qforge::train {

namespace {
using Clock = std::chrono::steady_clock;

void add_correct(const Tensor& logits, const Tensor& labels, int64_t& correct,
                 std::vector<int32_t>& predicted) {
  Tensor top = argmax(logits, 1);
  for (int64_t i = 0; i < labels.numel(); ++i) {
    predicted.push_back(top.data_as<int32_t>()[i]);
    correct += top.data_as<int32_t>()[i] == labels.data_as<int32_t>()[i];
  }
}

int64_t file_bytes(const std::string& path) {
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  return error ? 0 : static_cast<int64_t>(size);
}
}  // namespace

Agreement compare_models(const Forward& a, const Forward& b, const data::Dataset& dataset,
                         int64_t batch_size) {
  NoGradGuard no_grad;
  data::DataLoader loader(dataset, {.batch_size = batch_size, .shuffle = false});
  loader.start_epoch(0);
  Agreement result;
  int64_t correct_a = 0, correct_b = 0;
  std::vector<int32_t> predicted_a, predicted_b;
  double loss_a = 0, loss_b = 0, seconds_a = 0, seconds_b = 0;
  while (auto batch = loader.next()) {
    Clock::time_point start = Clock::now();
    Tensor logits_a = a(batch->images);
    const Clock::time_point middle = Clock::now();
    Tensor logits_b = b(batch->images);
    seconds_a += std::chrono::duration<double>(middle - start).count();
    seconds_b += std::chrono::duration<double>(Clock::now() - middle).count();
    QF_CHECK(logits_a.shape() == logits_b.shape(), "compare: the models give outputs ", logits_a.shape(),
             " and ", logits_b.shape());
    const int64_t n = batch->labels.numel();
    loss_a += cross_entropy(logits_a, batch->labels).item() * n;
    loss_b += cross_entropy(logits_b, batch->labels).item() * n;
    add_correct(logits_a, batch->labels, correct_a, predicted_a);
    add_correct(logits_b, batch->labels, correct_b, predicted_b);
    for (int64_t i = 0; i < logits_a.numel(); ++i)
      result.max_logit_difference =
          std::max(result.max_logit_difference,
                   static_cast<double>(std::fabs(logits_a.data()[i] - logits_b.data()[i])));
  }
  const double n = static_cast<double>(dataset.size());
  int64_t same = 0;
  for (std::size_t i = 0; i < predicted_a.size(); ++i) same += predicted_a[i] == predicted_b[i];
  result.identical_predictions = same / n;
  result.a = {loss_a / n, correct_a / n, n / seconds_a, seconds_a};
  result.b = {loss_b / n, correct_b / n, n / seconds_b, seconds_b};
  return result;
}

Shape sample_shape(const data::Dataset& dataset) {
  const Shape& shape = dataset.images.shape();
  return Shape(shape.begin() + 1, shape.end());
}

namespace {
// Saves, evaluates and compares an integer model against the model it came from.
IntegerResult record_integer_model(const quant::int8::IntegerModel& integer, const Forward& source,
                                   const char* source_name, double convert_seconds, const RunConfig& config,
                                   const Datasets& datasets, const std::string& stage,
                                   const std::string& file) {
  const std::string path = config.output_dir + "/" + file;
  integer.save(path, {{"config", config.source}, {"converted_from", stage}});
  Agreement agreement = compare_models([&](const Tensor& x) { return integer.forward(x); }, source,
                                       datasets.test, config.train.eval_batch_size);
  const int64_t bytes = file_bytes(path), fp32_bytes = file_bytes(config.output_dir + "/model.qf");
  StageSummary summary{stage, agreement.a.accuracy, agreement.a.loss, agreement.a.images_per_second,
                       convert_seconds};
  summary.extra = {{"model_file", file},
                   {"model_bytes", bytes},
                   {"weight_bytes", integer.weight_bytes()},
                   {"source_accuracy", agreement.b.accuracy},
                   {"identical_predictions", agreement.identical_predictions},
                   {"max_logit_difference", agreement.max_logit_difference},
                   {"ops", integer.ops().size()}};
  if (std::string(source_name) == "fake quant") summary.extra["fake_quant_accuracy"] = agreement.b.accuracy;
  if (fp32_bytes > 0) summary.extra["fp32_model_bytes"] = fp32_bytes;
  // Beside the .qfm, the same integer model as QDQ ONNX for ONNX Runtime (or why not).
  IntegerResult result{summary, agreement, bytes, path};
  const std::string onnx_path = path.substr(0, path.size() - 4) + ".onnx";
  try {
    quant::onnx_io::write_onnx(quant::onnx_io::export_integer_onnx(integer), onnx_path);
    result.onnx_file = onnx_path;
    summary.extra["onnx_file"] = onnx_path.substr(config.output_dir.size() + 1);
  } catch (const quant::onnx_io::ExportError& error) {
    result.no_onnx_reason = error.what();
  }
  result.summary = summary;
  record_stage(config.output_dir, summary);
  const std::string share =
      fp32_bytes > 0
          ? ", " + std::to_string(static_cast<int>(std::lround(100.0 * bytes / fp32_bytes))) + "% of fp32"
          : "";
  std::printf(
      "%s: integer model %s (%lld bytes%s), test accuracy %.2f%%, %.0f images/s; same prediction as "
      "%s on %.2f%% of images, max logit difference %.4g\n",
      stage.c_str(), path.c_str(), static_cast<long long>(bytes), share.c_str(), 100 * agreement.a.accuracy,
      agreement.a.images_per_second, source_name, 100 * agreement.identical_predictions,
      agreement.max_logit_difference);
  if (!result.onnx_file.empty())
    std::printf("%s: the same model as ONNX for ONNX Runtime: %s\n", stage.c_str(), result.onnx_file.c_str());
  else
    std::printf("%s: no ONNX file (%s)\n", stage.c_str(), result.no_onnx_reason.c_str());
  return result;
}
}  // namespace

IntegerResult deploy_integer_model(quant::QatModel& prepared, const RunConfig& config,
                                   const Datasets& datasets, const std::string& stage,
                                   const std::string& file) {
  prepared.eval();
  const Clock::time_point start = Clock::now();
  quant::int8::IntegerModel integer = quant::convert(prepared, sample_shape(datasets.test));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return record_integer_model(
      integer, [&](const Tensor& x) { return prepared.forward(x); }, "fake quant", seconds, config, datasets,
      stage, file);
}

IntegerResult deploy_dynamic_model(nn::Module& fp32, const RunConfig& config, const Datasets& datasets,
                                   const std::string& stage, const std::string& file) {
  fp32.eval();
  const Clock::time_point start = Clock::now();
  quant::int8::IntegerModel integer =
      quant::convert_dynamic(fp32, config.quant.spec.defaults.weight, sample_shape(datasets.test));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return record_integer_model(
      integer, [&](const Tensor& x) { return fp32.forward(x); }, "fp32", seconds, config, datasets, stage,
      file);
}

void write_predictions(const Forward& forward, const data::Dataset& dataset, int64_t batch_size,
                       const std::string& path, const std::string& logits_path) {
  NoGradGuard no_grad;
  data::DataLoader loader(dataset, {.batch_size = batch_size, .shuffle = false});
  loader.start_epoch(0);
  std::string lines, logits;
  while (auto batch = loader.next()) {
    const Tensor y = forward(batch->images);
    const Tensor top = argmax(y, 1);
    for (int64_t i = 0; i < top.numel(); ++i) lines += std::to_string(top.data_as<int32_t>()[i]) + "\n";
    logits.append(reinterpret_cast<const char*>(y.data()), y.size_bytes());
  }
  if (!path.empty()) write_file_atomically(path, lines);
  if (!logits_path.empty()) write_file_atomically(logits_path, logits);
}

Forward load_forward(const RunConfig& config, const std::string& file, std::string* description) {
  TensorFile saved = load_tensor_file(file);
  if (file_kind(saved, file) == "integer_model") {
    auto integer =
        std::make_shared<quant::int8::IntegerModel>(quant::int8::IntegerModel::from_file(saved, file));
    if (description) *description = "integer model";
    return [integer](const Tensor& x) { return integer->forward(x); };
  }
  nn::ModulePtr model = load_saved_model(config, file);
  model->eval();
  if (description)
    *description = dynamic_cast<quant::QatModel*>(model.get()) ? "fake-quant model" : "float model";
  return [model](const Tensor& x) { return model->forward(x); };
}

}  // namespace qforge::train
