// Model throughput on synthetic data (`qforge bench`): images/s of a full fp32 training
// step (forward, backward, SGD update) at the given batch, inference images/s at batch
// 256, and the training step's achieved GFLOP/s (GEMM and conv FLOPs counted by
// FlopCounter) beside this machine's measured fp32 peak, and where each of those times goes per
// op (Note [Op profile]: fp32_train_profile, fp32_infer_profile, qat_train_profile;
// int8_profile for the integer model). One JSON object per model. With
// onnx_dir, the models it timed are written there as ONNX too (<model>_fp32.onnx, and the int8
// model as QDQ <model>_int8.onnx — the LSTM's dynamic one, the static integer LSTM having no
// ONNX form), so ONNX Runtime can be timed on the very same models (bench/ort_side_by_side.sh).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace qforge::train {

struct BenchmarkOptions {
  int64_t batch = 64, infer_batch = 256;
  double min_seconds = 2.0;   // per measurement
  double peak_gflops = 0;     // measured once by the caller
  double int8_peak_gops = 0;  // the same, for the int8 kernels of detect_isa() (quant/int8/peak.h)
  std::string onnx_dir;       // "" for none
};

nlohmann::json benchmark_model(const std::string& model_name, const BenchmarkOptions& options);

}  // namespace qforge::train
