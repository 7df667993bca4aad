// ONNX files at the command line's level (quant/onnx does the graphs):
//   qforge export  a saved model (.qf float/QAT/PTQ, or .qfm) as an ONNX file
//   qforge import  a float ONNX model (from PyTorch) as a run folder qforge's commands take:
//                  model.qf (the weights, stage fp32) and config.json (its model section the
//                  imported layers, quant.fp32_checkpoint the model.qf), so `qforge ptq|qat|
//                  sweep|calibrate-compare|sensitivity|convert|export DIR/config.json` run on it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quant/onnx/onnx_export.h"
#include "train/config.h"

namespace qforge::train {

// `qforge export`: a QAT/PTQ model (.qf, converted first) or an integer model (.qfm) as QDQ
// ONNX, a float model (.qf) as plain ONNX. Returns what it wrote ("QDQ ONNX of the integer
// model", ...); an error names the layer it cannot express, and nothing is written. `options`
// apply to the QDQ exports.
std::string export_onnx_file(const RunConfig& config, const std::string& checkpoint, const std::string& out,
                             const quant::onnx_io::IntegerExportOptions& options = {});

struct ImportResult {
  std::string model_file, config_file;  // DIR/model.qf, DIR/config.json
  std::string description;              // one line for the console
};

// `qforge import`: reads `onnx_path`, builds the model from the imported layer list, loads its
// weights and runs it once, and only then writes DIR/model.qf and DIR/config.json. `base` is
// the config whose data, train and quant sections the written one keeps (null: qforge's
// defaults, Fashion-MNIST normalized as configs/default.json); `overrides` are --set
// assignments applied to the written config. Existing files are refused unless `force`.
ImportResult import_onnx_file(const std::string& onnx_path, const std::string& out_dir,
                              const nlohmann::json& base, const std::vector<std::string>& overrides,
                              bool force);

}  // namespace qforge::train
