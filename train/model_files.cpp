#include "train/model_files.h"

#include "core/config_reader.h"
#include "quant/prepare.h"

namespace qforge::train {

std::string file_kind(const TensorFile& file, const std::string& path) {
  ConfigReader header = ConfigReader::metadata(file.metadata, path);
  return header.choice("kind", "", {"state_dict", "checkpoint", "integer_model"});
}

SavedModel read_saved_model(const std::string& path) {
  TensorFile file = load_tensor_file(path);
  SavedModel saved;
  saved.kind = file_kind(file, path);
  QF_CHECK(saved.kind != "integer_model", path,
           ": an integer model (.qfm); this command needs a float, QAT or PTQ model (.qf)");
  ConfigReader header = ConfigReader::metadata(file.metadata, path);
  saved.stage = header.string("stage", "");
  saved.is_prepared = header.boolean("prepared", false);
  if (saved.kind == "checkpoint") {
    saved.state = tensors_under(file.tensors, "model.");
    saved.optimizer_state = tensors_under(file.tensors, "optimizer.");
  } else {
    saved.state = std::move(file.tensors);
  }
  saved.metadata = std::move(file.metadata);
  return saved;
}

nlohmann::json model_file_metadata(const nn::Module& model, const RunConfig& config, const std::string& kind,
                                   const std::string& stage) {
  const bool is_prepared = dynamic_cast<const quant::QatModel*>(&model) != nullptr;
  return {{"kind", kind},
          {"model", model.type_name()},
          {"stage", stage},
          {"prepared", is_prepared},
          {"spec", model_spec(config, is_prepared)}};
}

void save_model(const nn::Module& model, const std::string& path, const RunConfig& config,
                const std::string& stage) {
  save_tensor_file(path, model.state_dict(), model_file_metadata(model, config, "state_dict", stage));
}

nn::ModulePtr load_saved_model(const RunConfig& config, const std::string& file) {
  SavedModel saved = read_saved_model(file);
  nn::ModulePtr model = build_model(config, config.train.seed);
  check_model_spec(saved.metadata, config, saved.is_prepared, file);
  if (saved.is_prepared) model = quant::prepare_qat(model, config.quant.spec);
  model->load_state_dict(saved.state, file);
  return model;
}

}  // namespace qforge::train
