// The integer ops as pure kernels over pointers and sizes (STYLE habit 2), in two
// backends with one contract (Note [Backends]):
//   reference::  plain loops, one output element at a time, written to be read — the
//                teaching version of every op; no intrinsics, no library;
//   fast::       what deployment runs: conv/linear as a blocked u8×s8 GEMM on weights
//                packed once (quant/int8/gemm.h, chosen for the CPU at run time), the
//                other ops as loops over channels that the compiler vectorizes.
// Both produce identical bytes for every input (tests/quant/test_int8_backends.cpp).
// Activations are uint8 in NHWC order (channels last, as PyTorch's quantized conv
// returns them); weights int8 (O, C/groups, KH, KW) as in the float model; accumulation
// int32; the output stage is quant/int8/requantize.h.
// Legend: N batch, C/O input/output channels, H,W input and OH,OW output extents,
// K = C/groups·KH·KW the reduction, M rows of a GEMM.
#pragma once

#include <cstdint>
#include <optional>

#include <vector>

#include "core/kernels/conv2d.h"
#include "quant/int8/gemm.h"
#include "quant/int8/requantize.h"

namespace qforge::quant::int8 {

using kernels::Conv2dShape;

// Pooling geometry (NHWC). out_height/out_width are given by the caller (ceil_mode decides them).
struct PoolShape {
  int64_t batch, channels, in_height, in_width, out_height, out_width;
  int64_t kernel_height, kernel_width;
  int64_t stride_height, stride_width;
  int64_t padding_height = 0, padding_width = 0;
  int64_t dilation_height = 1, dilation_width = 1;  // max pool only
};
// PyTorch's output extent of a pooling window sweep, with or without ceil_mode.
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
                         bool ceil_mode);

struct AvgPoolOptions {
  bool count_include_pad = true;
  int64_t divisor_override = 0;  // 0: none
};

// PyTorch rounds quantized average pools differently per memory layout
// (../shared/reference/README_int8.md): channels_last q = rint(f32(acc·m)) + zp with
// acc = Σq − zp·n; contiguous q = rint(f32(f32(acc·m) + zp)). qforge's runtime is
// channels_last throughout; the contiguous rule exists for the conformance tests.
enum class PoolRounding { channels_last, contiguous };

namespace reference {

// q (n) = quantize(x (n)); x (n) = dequantize(q (n)).
void quantize(uint8_t* q, const float* x, int64_t n, const ActivationQuant& p);
void dequantize(float* x, const uint8_t* q, int64_t n, const ActivationQuant& p);

// acc (N,OH,OW,O) = Σ (x − zx)·w over each window; x (N,H,W,C), w (O,C/g,KH,KW).
// Taps in the padding read zx, so they add 0 (PyTorch pads the input with its zero point).
void conv2d_accumulate(int32_t* acc, const uint8_t* x, const int8_t* w, const Conv2dShape& s,
                       int32_t x_zero_point);
// acc (M,N) = Σ_k (x[m,k] − zx)·w[n,k]; x (M,K), w (N,K).
void linear_accumulate(int32_t* acc, const uint8_t* x, const int8_t* w, int64_t m, int64_t n, int64_t k,
                       int32_t x_zero_point);
// The output stage over rows of `channels` accumulators: y (rows, channels).
void requantize(uint8_t* y, const int32_t* acc, int64_t rows, int64_t channels, const OutputStage& stage);
void dequantize_accumulators(float* y, const int32_t* acc, int64_t rows, int64_t channels,
                             const OutputStage& stage);

// Whole layers: accumulate, then the output stage.
void conv2d(uint8_t* y, const uint8_t* x, const int8_t* w, const Conv2dShape& s, int32_t x_zero_point,
            const OutputStage& stage);
void linear(uint8_t* y, const uint8_t* x, const int8_t* w, int64_t m, int64_t n, int64_t k,
            int32_t x_zero_point, const OutputStage& stage);

// y = max(x, zp): ReLU on the quantized values (x̂ ≥ 0 ⇔ q ≥ zp).
void relu(uint8_t* y, const uint8_t* x, int64_t n, int32_t zero_point);
// y = quantize(relu?((a − za)·sa + (b − zb)·sb)) with the output's parameters.
void add(uint8_t* y, const uint8_t* a, const uint8_t* b, int64_t n, const ActivationQuant& pa,
         const ActivationQuant& pb, const ActivationQuant& py, bool has_relu);

// Pools keep the input's scale and zero point. Max ignores padding; y (N,OH,OW,C).
void max_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s);
void avg_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s, const AvgPoolOptions& options,
                int32_t zero_point, PoolRounding rounding = PoolRounding::channels_last);
// Windows [floor(i·H/OH), ceil((i+1)·H/OH)) × the same for columns.
void adaptive_avg_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s, int32_t zero_point,
                         PoolRounding rounding = PoolRounding::channels_last);

}  // namespace reference

namespace fast {

void quantize(uint8_t* q, const float* x, int64_t n, const ActivationQuant& p);
void dequantize(float* x, const uint8_t* q, int64_t n, const ActivationQuant& p);
void relu(uint8_t* y, const uint8_t* x, int64_t n, int32_t zero_point);
void add(uint8_t* y, const uint8_t* a, const uint8_t* b, int64_t n, const ActivationQuant& pa,
         const ActivationQuant& pb, const ActivationQuant& py, bool has_relu);
void max_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s);
void avg_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s, const AvgPoolOptions& options,
                int32_t zero_point);  // channels_last rounding
void adaptive_avg_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s, int32_t zero_point);

// A linear layer with its weights packed once: y (M,N) = stage(x (M,K) · wᵀ).
class LinearLayer {
 public:
  LinearLayer(const int8_t* w, int64_t n, int64_t k, int32_t x_zero_point, OutputStage stage,
              Isa isa = detect_isa());
  void run(uint8_t* y, const uint8_t* x, int64_t m) const;
  void run(float* y, const uint8_t* x, int64_t m) const;  // stage.is_float_output
  // With this call's input zero point and float output stage (dynamic quantization).
  void run(float* y, const uint8_t* x, int64_t m, int32_t x_zero_point, const OutputStage& stage) const;
  // The same with a float stage the caller laid out (FusedStage, Allow::float_output) and keeps,
  // refilling it for each call's input parameters without allocating (the dynamic LSTM's steps).
  void run(float* y, const uint8_t* x, int64_t m, const FusedStage& stage) const;
  const std::vector<int32_t>& column_sums() const { return packed_.column_sums(); }  // Σ_k w[j,k]
  int64_t in_features() const { return packed_.k(); }
  int64_t out_features() const { return packed_.n(); }

 private:
  template <typename Out>
  void run_rows(Out* y, const uint8_t* x, int64_t m, const FusedStage& fused) const;
  PackedWeights packed_;
  OutputStage stage_;
  std::optional<FusedStage> fused_;
};

// A conv layer with its weights packed once, as an implicit GEMM (Note [Implicit GEMM]):
// the input is copied once into a zero-point-padded NHWC buffer (uint8, or int16 for the
// avx2 kernels), and each output pixel's patch is read in place — one run of KW·C
// contiguous bytes per kernel row. Grouped convs run one GEMM per group, or — when the
// groups are narrow, as jermmy's 20 groups of 2 channels — one dense GEMM on
// block-diagonal weights, which adds exact zeros and keeps the vector lanes full.
class Conv2dLayer {
 public:
  // w (O,C/g,KH,KW); s.batch is ignored (run takes it).
  Conv2dLayer(const int8_t* w, const Conv2dShape& s, int32_t x_zero_point, OutputStage stage,
              Isa isa = detect_isa());
  void run(uint8_t* y, const uint8_t* x, int64_t batch) const;  // y (N,OH,OW,O)
  void run(float* y, const uint8_t* x, int64_t batch) const;    // stage.is_float_output
  const Conv2dShape& shape() const { return shape_; }
  bool is_dense() const { return gemms_.size() == 1; }

 private:
  template <typename Element, typename Out>
  void run_rows(Out* y, const uint8_t* x, int64_t batch) const;
  struct Gemm {  // one per group, or one for all
    PackedWeights weights;
    std::optional<FusedStage> fused;
    OutputStage stage;
    int64_t first_channel;  // of the output, and (per group) of the input
    int64_t input_channel;
  };
  Conv2dShape shape_;
  int32_t x_zero_point_;
  std::vector<Gemm> gemms_;
  std::vector<int64_t> tap_offsets_;  // in elements of the padded input
  int64_t padded_height_, padded_width_;
  OutputStage stage_;
};

}  // namespace fast

}  // namespace qforge::quant::int8
