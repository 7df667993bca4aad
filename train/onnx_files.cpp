#include "train/onnx_files.h"

#include <filesystem>

#include "core/autograd.h"
#include "core/config_reader.h"
#include "core/file_io.h"
#include "data/dataset.h"
#include "quant/convert.h"
#include "quant/onnx/onnx_export.h"
#include "quant/onnx/onnx_import.h"
#include "train/deploy.h"
#include "train/model_files.h"

namespace qforge::train {

std::string export_onnx_file(const RunConfig& config, const std::string& checkpoint, const std::string& out,
                             const quant::onnx_io::IntegerExportOptions& options) {
  TensorFile saved = load_tensor_file(checkpoint);
  if (file_kind(saved, checkpoint) == "integer_model") {
    quant::onnx_io::write_onnx(
        quant::onnx_io::export_integer_onnx(quant::int8::IntegerModel::from_file(saved, checkpoint), options),
        out);
    return "QDQ ONNX of the integer model";
  }
  nn::ModulePtr model = load_saved_model(config, checkpoint);
  model->eval();
  const Shape sample =
      sample_shape(data::load_idx_folder(config.data.path, data::Split::test, config.data.normalization, 1));
  if (auto* prepared = dynamic_cast<quant::QatModel*>(model.get())) {
    quant::onnx_io::write_onnx(
        quant::onnx_io::export_integer_onnx(quant::convert(*prepared, sample), options), out);
    return "QDQ ONNX of the integer model converted from the fake-quant model";
  }
  quant::onnx_io::write_onnx(quant::onnx_io::export_float_onnx(*model, sample), out);
  return "ONNX of the float model";
}

namespace {

int64_t count_layers(const nlohmann::json& layers, int64_t* residual_blocks) {
  int64_t n = 0;
  for (const nlohmann::json& layer : layers) {
    ++n;
    if (layer["type"] == "residual") {
      ++*residual_blocks;
      n += count_layers(layer["layers"], residual_blocks) - 1;
      if (layer.contains("shortcut")) n += count_layers(layer["shortcut"], residual_blocks);
    }
  }
  return n;
}

}  // namespace

ImportResult import_onnx_file(const std::string& onnx_path, const std::string& out_dir,
                              const nlohmann::json& base, const std::vector<std::string>& overrides,
                              bool force) {
  const quant::onnx_io::ImportedModel imported = quant::onnx_io::import_onnx(read_file(onnx_path), onnx_path);
  namespace fs = std::filesystem;
  ImportResult result{out_dir + "/model.qf", out_dir + "/config.json", ""};
  for (const std::string& file : {result.model_file, result.config_file})
    QF_CHECK(force || !fs::exists(file), file,
             " exists; import into another folder, or add --force to replace it");

  nlohmann::json config = base.is_null()
                              ? nlohmann::json{{"data",
                                                {{"dataset", "fashion-mnist"},
                                                 {"normalize", {{"mean", 0.2860}, {"std", 0.3530}}}}}}
                              : base;
  config["model"] = {{"layers", imported.layers}};
  config["quant"]["fp32_checkpoint"] = fs::absolute(result.model_file).lexically_normal().string();
  config["output"] = {{"dir", out_dir + "/run"}};
  for (const std::string& assignment : overrides) apply_override(config, assignment);
  // Everything is checked before anything is written: the config parses and builds the model,
  // the weights fit it, and it runs on one image of the imported input shape.
  const RunConfig run = parse_config(config, result.config_file);
  nn::ModulePtr model = build_model(run, run.train.seed);
  model->load_state_dict(imported.state, onnx_path);
  model->eval();
  {
    NoGradGuard no_grad;
    Shape one{1};
    one.insert(one.end(), imported.input_shape.begin(), imported.input_shape.end());
    const Tensor y = model->forward(Tensor::zeros(one));
    QF_CHECK(y.dim() == 2 && y.size(1) == imported.classes, onnx_path, ": the imported model gives ",
             shape_to_string(y.shape()), " for one image; the ONNX output has ", imported.classes,
             " classes");
  }
  fs::create_directories(out_dir);
  save_model(*model, result.model_file, run, "fp32");
  write_file_atomically(result.config_file, config.dump(2) + "\n");

  int64_t residual_blocks = 0, parameters = 0;
  const int64_t layers = count_layers(imported.layers, &residual_blocks);
  for (const auto& [name, tensor] : model->state_dict()) parameters += tensor.numel();
  result.description =
      "imported " + onnx_path + " (" + (imported.producer.empty() ? "unknown producer" : imported.producer) +
      ", opset " + std::to_string(imported.opset) + ", " + std::to_string(imported.nodes) + " nodes, input " +
      shape_to_string(imported.input_shape) + ", " + std::to_string(imported.classes) +
      " classes): " + std::to_string(layers) + " layers, " + std::to_string(residual_blocks) +
      " residual blocks, " + std::to_string(parameters) + " parameters and buffers";
  return result;
}

}  // namespace qforge::train
