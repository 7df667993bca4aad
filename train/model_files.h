// A run's model files (.qf) — what a stage saves and how every command reads one back:
//   model.qf, model_qat.qf, model_ptq.qf   {"kind": "state_dict", ...} and the state dict
//   checkpoint.qf, checkpoint_qat.qf       {"kind": "checkpoint", ...} and "model." / "optimizer." tensors
// Both say which stage wrote them, whether the model was prepared for quantization
// ("prepared": rebuild it with prepare_qat before loading) and what it was built with
// (Note [Saved spec], train/config.h). Metadata is read with every field's type checked:
// a file that lies names itself and the field. Integer models (.qfm) are quant/int8's.
#pragma once

#include <string>

#include "core/serialize.h"
#include "nn/module.h"
#include "train/config.h"

namespace qforge::train {

struct SavedModel {
  std::string kind;           // "state_dict" or "checkpoint"
  std::string stage;          // "fp32", "qat", "ptq" ("" in files from before stages were recorded)
  bool is_prepared = false;   // prepared for quantization (a QAT or PTQ model)
  TensorMap state;            // the model's state dict (a checkpoint's "model." tensors)
  TensorMap optimizer_state;  // a checkpoint's "optimizer." tensors
  nlohmann::json metadata;    // the whole header, for readers of the checkpoint's own fields
};

// "integer_model", "state_dict" or "checkpoint": what a tensor file holds (errors name the file).
std::string file_kind(const TensorFile& file, const std::string& path);

// A .qf model or checkpoint, its fields checked.
SavedModel read_saved_model(const std::string& path);

// The metadata every .qf this run writes carries: kind, stage, prepared and spec.
nlohmann::json model_file_metadata(const nn::Module& model, const RunConfig& config, const std::string& kind,
                                   const std::string& stage);

// Writes `model`'s state dict to `path` (atomically) with model_file_metadata.
void save_model(const nn::Module& model, const std::string& path, const RunConfig& config,
                const std::string& stage);

// A saved model rebuilt from the config: a prepared model is prepared with the config's quant
// section first, so QAT and PTQ results evaluate as they were trained; the saved spec must
// match the config's (check_model_spec).
nn::ModulePtr load_saved_model(const RunConfig& config, const std::string& file);

}  // namespace qforge::train
