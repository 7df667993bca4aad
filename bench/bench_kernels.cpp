// Kernel benchmark: GFLOP/s of sgemm and conv2d forward / backward-data /
// backward-weights on the layer shapes of lenet and resnet20 (and jermmy) at batch 64,
// each reported as a fraction of this machine's fp32 peak, measured here with a
// large sgemm (the better of OpenBLAS and oneDNN matmul). One JSON object per line.
//   bench_kernels [--threads N] [--seconds S]
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/kernels/conv2d.h"
#include "core/kernels/gemm.h"
#include "core/kernels/peak.h"
#include "core/random.h"
#include "core/threading.h"

using namespace qforge;
using nlohmann::json;

namespace {

double min_seconds = 0.3;

std::vector<float> random_buffer(int64_t count, uint64_t seed) {
  Generator generator(seed);
  std::vector<float> values(count);
  for (float& v : values) v = generator.uniform(-1, 1);
  return values;
}

struct ConvLayer {
  const char* model;
  const char* layer;
  kernels::Conv2dShape shape;
};

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads"))
      set_num_threads(std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--seconds"))
      min_seconds = std::atof(argv[i + 1]);
  }
  const int threads = num_threads();

  kernels::PeakMeasurement peak_gemm = kernels::measure_fp32_peak(2048, min_seconds);
  const double peak = peak_gemm.peak_gflops();
  std::cout << json{{"kernel", "peak_sgemm"},
                    {"shape", "2048x2048x2048"},
                    {"threads", threads},
                    {"openblas_gflops", peak_gemm.openblas_gflops},
                    {"onednn_gflops", peak_gemm.onednn_gflops},
                    {"peak_gflops", peak}}
            << std::endl;

  const int64_t batch = 64;
  struct FcLayer {
    const char* model;
    const char* layer;
    int64_t in, out;
  };
  const FcLayer fc_layers[] = {{"lenet", "fc1", 3136, 128},
                               {"lenet", "fc2", 128, 10},
                               {"resnet20", "fc", 64, 10},
                               {"jermmy", "fc", 1000, 10}};
  for (const FcLayer& fc : fc_layers) {
    // Forward of a linear layer: (batch, in) · (in, out).
    kernels::PeakMeasurement r = kernels::measure_gemm(batch, fc.out, fc.in, min_seconds);
    std::cout << json{{"kernel", "sgemm"},
                      {"model", fc.model},
                      {"layer", fc.layer},
                      {"m", batch},
                      {"n", fc.out},
                      {"k", fc.in},
                      {"openblas_gflops", r.openblas_gflops},
                      {"onednn_gflops", r.onednn_gflops},
                      {"openblas_fraction_of_peak", r.openblas_gflops / peak}}
              << std::endl;
  }

  using S = kernels::Conv2dShape;
  const ConvLayer conv_layers[] = {
      {"lenet", "conv1", S{batch, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2}},
      {"lenet", "conv2", S{batch, 32, 14, 14, 64, 5, 5, 1, 1, 2, 2}},
      {"jermmy", "conv1", S{batch, 1, 28, 28, 40, 3, 3}},
      {"jermmy", "conv2", S{batch, 40, 13, 13, 40, 3, 3, 1, 1, 0, 0, 1, 1, 20}},
      {"resnet20", "stem", S{batch, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1}},
      {"resnet20", "stage1", S{batch, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1}},
      {"resnet20", "stage2_down", S{batch, 16, 28, 28, 32, 3, 3, 2, 2, 1, 1}},
      {"resnet20", "stage2", S{batch, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1}},
      {"resnet20", "stage2_shortcut", S{batch, 16, 28, 28, 32, 1, 1, 2, 2}},
      {"resnet20", "stage3_down", S{batch, 32, 14, 14, 64, 3, 3, 2, 2, 1, 1}},
      {"resnet20", "stage3", S{batch, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1}},
      {"resnet20", "stage3_shortcut", S{batch, 32, 14, 14, 64, 1, 1, 2, 2}},
  };
  for (const ConvLayer& layer : conv_layers) {
    const S& s = layer.shape;
    auto x = random_buffer(s.batch * s.in_channels * s.in_height * s.in_width, 3);
    auto w = random_buffer(s.out_channels * (s.in_channels / s.groups) * s.kernel_height * s.kernel_width, 4);
    auto b = random_buffer(s.out_channels, 5);
    auto dy = random_buffer(s.batch * s.out_channels * s.out_height() * s.out_width(), 6);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
    const double flops = 2.0 * s.macs();
    json row{{"kernel", "conv2d"},
             {"model", layer.model},
             {"layer", layer.layer},
             {"batch", s.batch},
             {"in_channels", s.in_channels},
             {"out_channels", s.out_channels},
             {"kernel_size", s.kernel_height},
             {"stride", s.stride_height},
             {"groups", s.groups},
             {"input", std::to_string(s.in_height) + "x" + std::to_string(s.in_width)}};
    struct Direction {
      const char* name;
      std::function<void()> onednn, reference;
    };
    const Direction directions[] = {
        {"forward", [&] { kernels::conv2d_forward_onednn(y.data(), x.data(), w.data(), b.data(), s); },
         [&] { kernels::conv2d_forward_reference(y.data(), x.data(), w.data(), b.data(), s); }},
        {"backward_data", [&] { kernels::conv2d_backward_data_onednn(dx.data(), dy.data(), w.data(), s); },
         [&] { kernels::conv2d_backward_data_reference(dx.data(), dy.data(), w.data(), s); }},
        {"backward_weights",
         [&] { kernels::conv2d_backward_weights_onednn(dw.data(), db.data(), dy.data(), x.data(), s); },
         [&] { kernels::conv2d_backward_weights_reference(dw.data(), db.data(), dy.data(), x.data(), s); }},
    };
    for (const Direction& d : directions) {
      double onednn = flops / kernels::seconds_per_call(d.onednn, min_seconds) / 1e9;
      double reference = flops / kernels::seconds_per_call(d.reference, min_seconds) / 1e9;
      row[std::string(d.name) + "_gflops"] = onednn;
      row[std::string(d.name) + "_fraction_of_peak"] = onednn / peak;
      row[std::string(d.name) + "_reference_gflops"] = reference;
    }
    std::cout << row << std::endl;
  }
  return 0;
}
