// The fast backend's one hot loop: an exact u8×s8 → int32 GEMM on weights packed once,
//   c (M,N) = a (M,K) · wᵀ,   a uint8 rows, w (N,K) int8,
// with the output stage fused (the accumulators go from registers straight to uint8) and
// the instruction set chosen when the process starts (Note [Int8 instruction sets]).
// The rows of a are read in place (Note [Implicit GEMM]), so a convolution needs no im2col.
// The zero-point correction is the caller's `column_offsets` = zx·Σ_k w[j,k] (fbgemm's
// column offsets), subtracted before the output stage.
//
// Note [Int8 instruction sets]
// u8×s8 dot products on x86 come in three kinds:
//   avx512_vnni  vpdpbusd: four u8·s8 products summed straight into int32 — exact.
//   avx2         vpmaddubsw would sum two u8·s8 products into a *saturating* int16:
//                2·255·127 > 32767, so full-range activations corrupt the sum (oneDNN's
//                AVX2 int8 kernels do this and leave it to the user to keep activations
//                at 7 bits; ../shared/reference/README_int8.md). We widen activations to
//                int16 and use vpmaddwd, whose pair sums go to int32: exact for every
//                input, at half vpmaddubsw's rate.
//   generic      plain loops (any CPU).
// detect_isa() picks the best the CPU has; QFORGE_INT8_ISA=generic|avx2|avx512_vnni
// forces one (an unsupported choice is an error). Tests run every available one.
//
// Note [Implicit GEMM]
// Row r of a is `taps` runs of `run_length` elements, run t starting at
//   base + row_offsets[r] + tap_offsets[t]        (in elements)
// A linear layer has one tap (its input row); a convolution over a zero-point-padded NHWC
// input has one tap per kernel row — the KW·C bytes of a kernel row are contiguous in
// NHWC — so every output pixel's patch is read where it lies. Each run is padded to the
// instruction's group of products (4 for vpdpbusd, 2 for vpmaddwd) with zero weights, so
// a kernel may read up to 3 elements past a run: the caller guarantees they are readable
// (core tensors carry 64 bytes of slack); their values are multiplied by 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/int8/requantize.h"

namespace qforge::quant::int8 {

enum class Isa { generic, avx2, avx512_vnni };

const char* isa_name(Isa isa);
bool isa_supported(Isa isa);
std::vector<Isa> supported_isas();
Isa detect_isa();  // the best supported, or $QFORGE_INT8_ISA

// Rows of a (Note [Implicit GEMM]); elements are uint8, or int16 for the avx2 kernels
// (PackedWeights::element_size()).
struct GemmRows {
  const void* base;
  const int64_t* row_offsets;  // (rows)
  const int64_t* tap_offsets;  // (taps)
};

// An output stage laid out for the kernels: per column, the zero-point correction
// (column_offsets = zx·Σ_k w), multiplier and bias, padded to whole vectors. Built once per layer.
struct FusedStage {
  // Float output stages are laid out too (their offsets serve the float path); the fused
  // uint8 kernels refuse them.
  enum class Allow { uint8_output, float_output };
  FusedStage(const std::vector<int32_t>& column_offsets, const OutputStage& stage,
             Allow allow = Allow::uint8_output);
  OutputStage stage;
  std::vector<int32_t> offsets;
  std::vector<float> multiplier, bias;
  float zero_point, quant_min, quant_max;
  bool has_relu;
};

class PackedWeights {
 public:
  PackedWeights() = default;
  // w (n, taps, run_length) int8 row-major, packed for `isa`.
  PackedWeights(const int8_t* w, int64_t n, int64_t taps, int64_t run_length, Isa isa);
  int64_t n() const { return n_; }
  int64_t k() const { return taps_ * run_length_; }
  int64_t taps() const { return taps_; }
  int64_t run_length() const { return run_length_; }
  Isa isa() const { return isa_; }
  int64_t element_size() const { return isa_ == Isa::avx2 ? 2 : 1; }        // of the rows' elements
  const std::vector<int32_t>& column_sums() const { return column_sums_; }  // Σ_k w[j,k]

  // c (rows, ldc ≥ n) = a · wᵀ, raw int32 sums (no zero-point term).
  void multiply(int32_t* c, int64_t ldc, const GemmRows& a, int64_t rows) const;
  // y (rows, ldy ≥ n) = stage(a · wᵀ − column offsets), uint8.
  void multiply_requantize(uint8_t* y, int64_t ldy, const GemmRows& a, int64_t rows,
                           const FusedStage& stage) const;

 private:
  int64_t n_ = 0, taps_ = 0, run_length_ = 0, padded_run_ = 0, padded_n_ = 0;
  Isa isa_ = Isa::generic;
  std::vector<int8_t> bytes_;   // generic: (n, taps, run); avx512_vnni: [N/16][K'/4][16][4]
  std::vector<int16_t> words_;  // avx2: [N/8][K'/2][8][2]
  std::vector<int32_t> column_sums_;
};

}  // namespace qforge::quant::int8
