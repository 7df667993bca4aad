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

// Calibration (PTQ, and QAT's optional first step): eval mode (running BN statistics, no
// dropout), observers on, fake quant off, over `batches` shuffled batches of `dataset`;
// then observers off, fake quant on. An observer that sees a non-finite range stops it,
// naming the quantizer and the batch.
struct Calibration {
  int64_t batches = 0;
  double seconds = 0;
};
Calibration calibrate(nn::Module& prepared, const data::Dataset& dataset, int64_t batches, int64_t batch_size,
                      uint64_t seed);

void run_qat(const RunConfig& config, bool resume);
void run_ptq(const RunConfig& config);

}  // namespace qforge::train
