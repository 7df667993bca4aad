// The quantization stages driven from a config (`qforge qat`, `qforge ptq`):
//   qat  fp32 model (the config's quant.fp32_checkpoint, or trained first) -> prepare
//        (fuse, fold BN, insert FakeQuantize) -> fine-tune with the literature's recipe
//        (about 10% of the fp32 epochs, learning rate 1% of fp32's, cosine-annealed;
//        observers / BN statistics frozen at the configured epochs) -> evaluate.
//   ptq  fp32 model -> prepare -> calibrate observers on N training batches in eval mode
//        -> evaluate with fake quantization.
// Both record fp32 and quantized accuracy in summary.json and save the prepared model;
// `qforge eval` reloads either kind (load_saved_model, train/model_files.h).
#pragma once

#include "train/config.h"
#include "train/trainer.h"

namespace qforge::train {

void run_qat(const RunConfig& config, bool resume);
void run_ptq(const RunConfig& config);

}  // namespace qforge::train
