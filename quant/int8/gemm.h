// The fast backend's one hot loop: an exact u8×s8 → int32 GEMM on weights packed once,
//   c (M,N) = a (M,K) · wᵀ,   a uint8 rows, w (N,K) int8,
// with the instruction set chosen when the process starts (Note [Int8 instruction sets]).
// The zero-point correction is not here: the caller subtracts zx·column_sums[j]
// (fbgemm's column offsets) in its output stage.
//
// Note [Int8 instruction sets]
// u8×s8 dot products on x86 come in three kinds:
//   avx512_vnni  vpdpbusd: four u8·s8 products summed straight into int32 — exact.
//   avx2         vpmaddubsw would sum two u8·s8 products into a *saturating* int16:
//                2·255·127 > 32767, so full-range activations corrupt the sum (oneDNN's
//                AVX2 int8 kernels do this and leave it to the user to keep activations
//                at 7 bits; ../shared/reference/README_int8.md). We widen both operands
//                to int16 and use vpmaddwd, whose pair sums go to int32: exact for every
//                input, at half vpmaddubsw's rate.
//   generic      plain loops (any CPU).
// detect_isa() picks the best the CPU has; QFORGE_INT8_ISA=generic|avx2|avx512_vnni
// forces one (an unsupported choice is an error). Tests run every available one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qforge::quant::int8 {

enum class Isa { generic, avx2, avx512_vnni };

const char* isa_name(Isa isa);
bool isa_supported(Isa isa);
std::vector<Isa> supported_isas();
Isa detect_isa();  // the best supported, or $QFORGE_INT8_ISA

class PackedWeights {
 public:
  PackedWeights() = default;
  // w (n,k) row-major int8, packed for `isa`.
  PackedWeights(const int8_t* w, int64_t n, int64_t k, Isa isa);
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  Isa isa() const { return isa_; }
  // How many bytes each row of `a` must be readable for (k rounded up to the
  // instruction's group of products); the bytes past k may hold anything.
  int64_t padded_k() const { return padded_k_; }
  const std::vector<int32_t>& column_sums() const { return column_sums_; }  // Σ_k w[j,k]

  // c (m, ldc ≥ n) = a (m, lda ≥ padded_k) · wᵀ, raw int32 sums (no zero-point term).
  void multiply(int32_t* c, int64_t ldc, const uint8_t* a, int64_t lda, int64_t m) const;

 private:
  int64_t n_ = 0, k_ = 0, padded_k_ = 0, padded_n_ = 0;
  Isa isa_ = Isa::generic;
  std::vector<int8_t> bytes_;   // generic: w as given; avx512_vnni: [N/16][K/4][16][4]
  std::vector<int16_t> words_;  // avx2: [N/8][K/2][8][2]
  std::vector<int32_t> column_sums_;
};

}  // namespace qforge::quant::int8
