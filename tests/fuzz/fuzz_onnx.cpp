// libFuzzer harness: ONNX import (quant/onnx/onnx_import.h) of untrusted bytes — a model, or
// one qforge::Error, nothing else. What imports is then built as `qforge import` builds it (the
// layer list parsed as a config, the weights loaded, one forward pass on a zero image), so a
// file the importer accepts never makes a config or a model qforge cannot run. Seeds:
// tests/fuzz/corpus/onnx (make_fuzz_seeds's exports of small qforge models, and a tiny
// PyTorch export from tests/onnx/models/make_models.py).
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/autograd.h"
#include "core/error.h"
#include "quant/onnx/onnx_import.h"
#include "train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace qforge;
  try {
    const quant::onnx_io::ImportedModel imported =
        quant::onnx_io::import_onnx(std::string(reinterpret_cast<const char*>(data), size), "fuzz.onnx");
    const nlohmann::json config = {{"data", {{"dataset", "idx"}, {"path", "fuzz"}}},
                                   {"model", {{"layers", imported.layers}}}};
    const train::RunConfig run = train::parse_config(config, "fuzz.json");
    nn::ModulePtr model = train::build_model(run, 0);
    model->load_state_dict(imported.state, "fuzz.onnx");
    int64_t elements = 1;
    for (int64_t e : imported.input_shape) elements *= e;
    if (elements <= (1 << 14)) {
      NoGradGuard no_grad;
      model->eval();
      Shape one{1};
      one.insert(one.end(), imported.input_shape.begin(), imported.input_shape.end());
      (void)model->forward(Tensor::zeros(one));
    }
  } catch (const Error&) {
  }
  return 0;
}
