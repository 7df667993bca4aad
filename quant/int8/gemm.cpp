// The u8×s8 GEMM kernels (Note [Int8 instruction sets] in gemm.h). Each instruction set
// gets a register-blocked micro-kernel: `rows` rows of `a` times `blocks` blocks of
// output columns, accumulators in registers over the whole k loop, one store at the end.
// They are compiled with target attributes, so one binary carries all of them and the
// CPU decides at run time.
#include "quant/int8/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace qforge::quant::int8 {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic:
      return "generic";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512_vnni:
      return "avx512_vnni";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::generic:
      return true;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512_vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512_vnni})
    if (isa_supported(isa)) isas.push_back(isa);
  return isas;
}

Isa detect_isa() {
  static const Isa chosen = [] {
    if (const char* forced = std::getenv("QFORGE_INT8_ISA"); forced && *forced) {
      for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512_vnni})
        if (std::string(forced) == isa_name(isa)) {
          QF_CHECK(isa_supported(isa), "QFORGE_INT8_ISA: this CPU does not support ", forced);
          return isa;
        }
      QF_FAIL("QFORGE_INT8_ISA: expected generic, avx2 or avx512_vnni, got \"", forced, "\"");
    }
    return supported_isas().back();
  }();
  return chosen;
}

namespace {

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

int32_t load_int32(const uint8_t* p) {
  int32_t value;
  std::memcpy(&value, p, 4);
  return value;
}

// ---- generic ------------------------------------------------------------------------

void multiply_generic(int32_t* c, int64_t ldc, const uint8_t* a, int64_t lda, int64_t m, const int8_t* w,
                      int64_t n, int64_t k) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int32_t total = 0;
      for (int64_t p = 0; p < k; ++p) total += static_cast<int32_t>(a[i * lda + p]) * w[j * k + p];
      c[i * ldc + j] = total;
    }
}

// ---- avx512_vnni: w packed [N/16][K/4][16 columns][4 bytes] ----------------------------

template <int kRows, int kBlocks>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void vnni_tile(int32_t* c, int64_t ldc,
                                                                               const uint8_t* a, int64_t lda,
                                                                               const int8_t* w,
                                                                               int64_t k_groups,
                                                                               int64_t columns_left) {
  __m512i acc[kRows][kBlocks];
  for (int r = 0; r < kRows; ++r)
    for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm512_setzero_si512();
  const int64_t block_stride = k_groups * 64;
  for (int64_t g = 0; g < k_groups; ++g) {
    __m512i wv[kBlocks];
    for (int b = 0; b < kBlocks; ++b) wv[b] = _mm512_loadu_si512(w + b * block_stride + g * 64);
    for (int r = 0; r < kRows; ++r) {
      const __m512i av = _mm512_set1_epi32(load_int32(a + r * lda + 4 * g));
      for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], av, wv[b]);
    }
  }
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t left = columns_left - 16 * b;
    const __mmask16 mask = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    for (int r = 0; r < kRows; ++r) _mm512_mask_storeu_epi32(c + r * ldc + 16 * b, mask, acc[r][b]);
  }
}

template <int kBlocks, int kRows>
void vnni_columns(int32_t* c, int64_t ldc, const uint8_t* a, int64_t lda, int64_t m, const int8_t* w,
                  int64_t k_groups, int64_t columns_left) {
  int64_t i = 0;
  for (; i + kRows <= m; i += kRows)
    vnni_tile<kRows, kBlocks>(c + i * ldc, ldc, a + i * lda, lda, w, k_groups, columns_left);
  for (; i < m; ++i) vnni_tile<1, kBlocks>(c + i * ldc, ldc, a + i * lda, lda, w, k_groups, columns_left);
}

void multiply_vnni(int32_t* c, int64_t ldc, const uint8_t* a, int64_t lda, int64_t m, const int8_t* w,
                   int64_t n, int64_t padded_k) {
  const int64_t k_groups = padded_k / 4;
  for (int64_t j = 0; j < n; j += 64) {  // up to 4 blocks of 16 columns per pass over a
    const int64_t columns_left = n - j;
    const int8_t* wj = w + (j / 16) * k_groups * 64;
    switch (std::min<int64_t>(4, (columns_left + 15) / 16)) {
      case 4:
        vnni_columns<4, 6>(c + j, ldc, a, lda, m, wj, k_groups, columns_left);
        break;
      case 3:
        vnni_columns<3, 8>(c + j, ldc, a, lda, m, wj, k_groups, columns_left);
        break;
      case 2:
        vnni_columns<2, 12>(c + j, ldc, a, lda, m, wj, k_groups, columns_left);
        break;
      default:
        vnni_columns<1, 16>(c + j, ldc, a, lda, m, wj, k_groups, columns_left);
    }
  }
}

// ---- avx2: a widened to int16, w packed [N/8][K/2][8 columns][2 words] --------------------

template <int kRows, int kBlocks>
__attribute__((target("avx2,fma"))) void avx2_tile(int32_t* c, int64_t ldc, const int16_t* a, int64_t lda,
                                                   const int16_t* w, int64_t k_pairs, int64_t columns_left) {
  __m256i acc[kRows][kBlocks];
  for (int r = 0; r < kRows; ++r)
    for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm256_setzero_si256();
  const int64_t block_stride = k_pairs * 16;
  for (int64_t g = 0; g < k_pairs; ++g) {
    __m256i wv[kBlocks];
    for (int b = 0; b < kBlocks; ++b)
      wv[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * block_stride + g * 16));
    for (int r = 0; r < kRows; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * g, 4);
      const __m256i av = _mm256_set1_epi32(pair);
      // vpmaddwd: (x0·w0 + x1·w1) per column, int16 products summed into int32 — exact.
      for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm256_add_epi32(acc[r][b], _mm256_madd_epi16(av, wv[b]));
    }
  }
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t left = columns_left - 8 * b;
    if (left >= 8) {
      for (int r = 0; r < kRows; ++r)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8 * b), acc[r][b]);
    } else {
      alignas(32) int32_t lanes[8];
      for (int r = 0; r < kRows; ++r) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[r][b]);
        std::memcpy(c + r * ldc + 8 * b, lanes, left * sizeof(int32_t));
      }
    }
  }
}

template <int kBlocks, int kRows>
void avx2_columns(int32_t* c, int64_t ldc, const int16_t* a, int64_t lda, int64_t m, const int16_t* w,
                  int64_t k_pairs, int64_t columns_left) {
  int64_t i = 0;
  for (; i + kRows <= m; i += kRows)
    avx2_tile<kRows, kBlocks>(c + i * ldc, ldc, a + i * lda, lda, w, k_pairs, columns_left);
  for (; i < m; ++i) avx2_tile<1, kBlocks>(c + i * ldc, ldc, a + i * lda, lda, w, k_pairs, columns_left);
}

void multiply_avx2(int32_t* c, int64_t ldc, const uint8_t* a, int64_t lda, int64_t m, const int16_t* w,
                   int64_t n, int64_t k) {
  const int64_t k_pairs = round_up(k, 2) / 2, wide_lda = 2 * k_pairs;
  // Widen the rows once: u8 -> int16 (values 0..255 stay positive), zero past k.
  std::vector<int16_t> wide(m * wide_lda, 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) wide[i * wide_lda + p] = a[i * lda + p];
  for (int64_t j = 0; j < n; j += 24) {  // up to 3 blocks of 8 columns per pass
    const int64_t columns_left = n - j;
    const int16_t* wj = w + (j / 8) * k_pairs * 16;
    switch (std::min<int64_t>(3, (columns_left + 7) / 8)) {
      case 3:
        avx2_columns<3, 4>(c + j, ldc, wide.data(), wide_lda, m, wj, k_pairs, columns_left);
        break;
      case 2:
        avx2_columns<2, 6>(c + j, ldc, wide.data(), wide_lda, m, wj, k_pairs, columns_left);
        break;
      default:
        avx2_columns<1, 12>(c + j, ldc, wide.data(), wide_lda, m, wj, k_pairs, columns_left);
    }
  }
}

}  // namespace

PackedWeights::PackedWeights(const int8_t* w, int64_t n, int64_t k, Isa isa) : n_(n), k_(k), isa_(isa) {
  QF_CHECK(isa_supported(isa), "int8 gemm: this CPU does not support ", isa_name(isa));
  QF_CHECK(n >= 1 && k >= 1, "int8 gemm: empty weights (", n, "x", k, ")");
  column_sums_.assign(n, 0);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t p = 0; p < k; ++p) column_sums_[j] += w[j * k + p];
  switch (isa) {
    case Isa::generic:
      padded_k_ = k, padded_n_ = n;
      bytes_.assign(w, w + n * k);
      break;
    case Isa::avx512_vnni: {
      padded_k_ = round_up(k, 4), padded_n_ = round_up(n, 16);
      const int64_t groups = padded_k_ / 4;
      bytes_.assign(padded_n_ * padded_k_, 0);
      for (int64_t j = 0; j < n; ++j)
        for (int64_t p = 0; p < k; ++p)
          bytes_[(((j / 16) * groups + p / 4) * 16 + j % 16) * 4 + p % 4] = w[j * k + p];
      break;
    }
    case Isa::avx2: {
      padded_k_ = k;  // rows are widened (and padded) inside multiply
      padded_n_ = round_up(n, 8);
      const int64_t pairs = round_up(k, 2) / 2;
      words_.assign(padded_n_ * pairs * 2, 0);
      for (int64_t j = 0; j < n; ++j)
        for (int64_t p = 0; p < k; ++p)
          words_[(((j / 8) * pairs + p / 2) * 8 + j % 8) * 2 + p % 2] = w[j * k + p];
      break;
    }
  }
}

void PackedWeights::multiply(int32_t* c, int64_t ldc, const uint8_t* a, int64_t lda, int64_t m) const {
  switch (isa_) {
    case Isa::generic:
      multiply_generic(c, ldc, a, lda, m, bytes_.data(), n_, k_);
      break;
    case Isa::avx512_vnni:
      multiply_vnni(c, ldc, a, lda, m, bytes_.data(), n_, padded_k_);
      break;
    case Isa::avx2:
      multiply_avx2(c, ldc, a, lda, m, words_.data(), n_, k_);
      break;
  }
}

}  // namespace qforge::quant::int8
