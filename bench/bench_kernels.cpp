// Kernel benchmark: GFLOP/s of sgemm and conv2d forward / backward-data /
// backward-weights on the layer shapes of lenet and resnet20 (and jermmy) at batch 64,
// each reported as a fraction of this machine's fp32 peak, measured here with a
// large sgemm (the better of OpenBLAS and oneDNN matmul); then the int8 path: this
// machine's int8 peak (a large u8×s8 GEMM per instruction set) and the int8 conv and
// linear layers' GOP/s (2 ops per multiply-add, as for fp32) beside their fp32 forward.
// One JSON object per line.
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
#include "quant/int8/kernels.h"
#include "quant/int8/peak.h"

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

struct FcLayer {
  const char* model;
  const char* layer;
  int64_t in, out;
};

constexpr int64_t kBatch = 64;
using S = kernels::Conv2dShape;
const FcLayer kFcLayers[] = {{"lenet", "fc1", 3136, 128},
                             {"lenet", "fc2", 128, 10},
                             {"resnet20", "fc", 64, 10},
                             {"jermmy", "fc", 1000, 10}};
const ConvLayer kConvLayers[] = {
    {"lenet", "conv1", S{kBatch, 1, 28, 28, 32, 5, 5, 1, 1, 2, 2}},
    {"lenet", "conv2", S{kBatch, 32, 14, 14, 64, 5, 5, 1, 1, 2, 2}},
    {"jermmy", "conv1", S{kBatch, 1, 28, 28, 40, 3, 3}},
    {"jermmy", "conv2", S{kBatch, 40, 13, 13, 40, 3, 3, 1, 1, 0, 0, 1, 1, 20}},
    {"resnet20", "stem", S{kBatch, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1}},
    {"resnet20", "stage1", S{kBatch, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1}},
    {"resnet20", "stage2_down", S{kBatch, 16, 28, 28, 32, 3, 3, 2, 2, 1, 1}},
    {"resnet20", "stage2", S{kBatch, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1}},
    {"resnet20", "stage2_shortcut", S{kBatch, 16, 28, 28, 32, 1, 1, 2, 2}},
    {"resnet20", "stage3_down", S{kBatch, 32, 14, 14, 64, 3, 3, 2, 2, 1, 1}},
    {"resnet20", "stage3", S{kBatch, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1}},
    {"resnet20", "stage3_shortcut", S{kBatch, 32, 14, 14, 64, 1, 1, 2, 2}},
};

// The linear layers' forward sgemm, OpenBLAS and oneDNN.
void bench_sgemm_layers(double peak) {
  for (const FcLayer& fc : kFcLayers) {
    // Forward of a linear layer: (batch, in) · (in, out).
    kernels::PeakMeasurement r = kernels::measure_gemm(kBatch, fc.out, fc.in, min_seconds);
    std::cout << json{{"kernel", "sgemm"},
                      {"model", fc.model},
                      {"layer", fc.layer},
                      {"m", kBatch},
                      {"n", fc.out},
                      {"k", fc.in},
                      {"openblas_gflops", r.openblas_gflops},
                      {"onednn_gflops", r.onednn_gflops},
                      {"openblas_fraction_of_peak", r.openblas_gflops / peak}}
              << std::endl;
  }
}

// Each conv layer's three directions on oneDNN and on the reference; returns the forward
// GFLOP/s per layer (for the int8 rows).
std::vector<double> bench_fp32_convs(double peak) {
  std::vector<double> fp32_forward;
  for (const ConvLayer& layer : kConvLayers) {
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
    fp32_forward.push_back(row["forward_gflops"]);
  }
  return fp32_forward;
}

// Random uint8 activations (with slack past the end) and int8 weights in [-127, 127].
struct Int8Data {
  Generator generator{9};
  std::vector<uint8_t> bytes(int64_t n) {
    std::vector<uint8_t> v(n + 64);
    for (auto& e : v) e = static_cast<uint8_t>(generator.below(256));
    return v;
  }
  std::vector<int8_t> weights(int64_t n) {
    std::vector<int8_t> v(n);
    for (auto& e : v) e = static_cast<int8_t>(static_cast<int>(generator.below(255)) - 127);
    return v;
  }
};

quant::int8::OutputStage stage_for(int64_t channels) {
  return quant::int8::make_requantization({0.02f, 0}, std::vector<float>(channels, 0.005f),
                                          std::vector<float>(channels, 0.1f), {0.5f, 10}, true);
}

// This machine's int8 peak per instruction set (quant/int8/peak.h).
void bench_int8_peak(double peak, int threads) {
  using namespace qforge::quant::int8;
  for (Isa isa : supported_isas())
    std::cout << json{{"kernel", "peak_int8_gemm"},
                      {"isa", isa_name(isa)},
                      {"shape", "4096x256x1024"},
                      {"threads", threads},
                      {"gops", measure_int8_peak_gops(isa, min_seconds)},
                      {"fp32_peak_gflops", peak}}
              << std::endl;
}

// The int8 conv and linear layers' GOP/s per instruction set, beside the fp32 forward.
void bench_int8_layers(Int8Data& data, const std::vector<double>& fp32_forward) {
  using namespace qforge::quant::int8;
  for (std::size_t i = 0; i < std::size(kConvLayers); ++i) {
    const S s = kConvLayers[i].shape;
    auto x = data.bytes(s.batch * s.in_channels * s.in_height * s.in_width);
    auto w = data.weights(s.out_channels * (s.in_channels / s.groups) * s.kernel_height * s.kernel_width);
    std::vector<uint8_t> y(s.batch * s.out_channels * s.out_height() * s.out_width());
    json row{{"kernel", "int8_conv2d"},
             {"model", kConvLayers[i].model},
             {"layer", kConvLayers[i].layer},
             {"batch", s.batch},
             {"fp32_forward_gflops", fp32_forward[i]}};
    for (Isa isa : supported_isas()) {
      const fast::Conv2dLayer layer(w.data(), s, 7, stage_for(s.out_channels), isa);
      const double seconds =
          kernels::seconds_per_call([&] { layer.run(y.data(), x.data(), s.batch); }, min_seconds);
      row[std::string(isa_name(isa)) + "_gops"] = 2.0 * s.macs() / seconds / 1e9;
    }
    std::cout << row << std::endl;
  }
  for (const FcLayer& fc : kFcLayers) {
    auto x = data.bytes(kBatch * fc.in);
    auto w = data.weights(fc.out * fc.in);
    std::vector<uint8_t> y(kBatch * fc.out);
    json row{{"kernel", "int8_linear"},
             {"model", fc.model},
             {"layer", fc.layer},
             {"m", kBatch},
             {"n", fc.out},
             {"k", fc.in}};
    for (Isa isa : supported_isas()) {
      const fast::LinearLayer layer(w.data(), fc.out, fc.in, 7, stage_for(fc.out), isa);
      const double seconds =
          kernels::seconds_per_call([&] { layer.run(y.data(), x.data(), kBatch); }, min_seconds);
      row[std::string(isa_name(isa)) + "_gops"] = 2.0 * kBatch * fc.out * fc.in / seconds / 1e9;
    }
    std::cout << row << std::endl;
  }
}

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
  bench_sgemm_layers(peak);
  const std::vector<double> fp32_forward = bench_fp32_convs(peak);
  Int8Data data;
  bench_int8_peak(peak, threads);
  bench_int8_layers(data, fp32_forward);
  return 0;
}
