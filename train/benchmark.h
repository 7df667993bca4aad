// Model throughput on synthetic data (`qforge bench`): images/s of a full fp32 training
// step (forward, backward, SGD update) at the given batch, inference images/s at batch
// 256, and the training step's achieved GFLOP/s (GEMM and conv FLOPs counted by
// FlopCounter) beside this machine's measured fp32 peak. One JSON object per model.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace qforge::train {

struct BenchmarkOptions {
  int64_t batch = 64, infer_batch = 256;
  double min_seconds = 2.0;  // per measurement
  double peak_gflops = 0;    // measured once by the caller
};

nlohmann::json benchmark_model(const std::string& model_name, const BenchmarkOptions& options);

}  // namespace qforge::train
