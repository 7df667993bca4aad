// Deployment from a config: convert a QAT/PTQ model to the integer model (quant/convert.h),
// save it as a .qfm, evaluate it, and measure how closely it follows the fake-quant model
// it came from — the agreement users check on their own models with
// `qforge eval CONFIG --checkpoint model.qfm --compare model_qat.qf`.
#pragma once

#include <string>

#include "quant/int8/integer_model.h"
#include "quant/qat_modules.h"
#include "train/config.h"
#include "train/trainer.h"

namespace qforge::train {

struct Agreement {
  double identical_predictions = 0;  // fraction of test images with the same arg max
  double max_logit_difference = 0;   // largest |a − b| over all logits
  EvalResult a, b;                   // each model's own evaluation
};
// Runs both models over the dataset once.
Agreement compare_models(const Forward& a, const Forward& b, const data::Dataset& dataset,
                         int64_t batch_size);

// The integer model's input: one sample's shape, from the config's test data.
Shape sample_shape(const data::Dataset& dataset);

// A deployed integer model: its evaluation, its agreement with the model it came from,
// and its file.
struct IntegerResult {
  StageSummary summary;  // stage int8 / int8_ptq / int8_dynamic: accuracy, loss, images/s
  Agreement agreement;   // against the fake-quant model (or the fp32 one, for dynamic)
  int64_t model_bytes = 0;
  std::string file;            // the .qfm
  std::string onnx_file;       // the same model as QDQ ONNX beside it ("" when it cannot be exported:
  std::string no_onnx_reason;  // then why, quant/onnx/onnx_export.h)
};

// Converts `prepared` (evaluated in eval mode), writes <output_dir>/<file> and the same
// model as QDQ ONNX beside it (<file> with .onnx; quant/onnx/onnx_export.h), evaluates the
// integer model against the fake-quant one and records the stage `stage` in summary.json
// (accuracy, loss, images/s, model_bytes, agreement); prints one line. Throws
// quant::ConvertError when the runtime cannot run this quantization (nothing written).
IntegerResult deploy_integer_model(quant::QatModel& prepared, const RunConfig& config,
                                   const Datasets& datasets, const std::string& stage,
                                   const std::string& file);
// The same for quant.mode "dynamic": the fp32 model converted by convert_dynamic and
// compared with itself in float.
IntegerResult deploy_dynamic_model(nn::Module& fp32, const RunConfig& config, const Datasets& datasets,
                                   const std::string& stage, const std::string& file);

// One predicted label per image of `dataset`, in order, one per line (what `qforge eval
// --predictions` writes, for comparing qforge with another runtime line by line), and with
// `logits_path` the logits too, as raw little-endian float32 (N, classes).
void write_predictions(const Forward& forward, const data::Dataset& dataset, int64_t batch_size,
                       const std::string& path, const std::string& logits_path = "");

// A saved model of any kind as a forward function: .qfm integer models, or .qf float,
// QAT and PTQ models (load_saved_model). `description` says which it was.
Forward load_forward(const RunConfig& config, const std::string& file, std::string* description = nullptr);

}  // namespace qforge::train
