// The u8×s8 GEMM kernels (Notes [Int8 instruction sets] and [Implicit GEMM] in gemm.h).
// Each instruction set has one register-blocked micro-kernel: `kRows` rows of a times
// `kBlocks` blocks of output columns, accumulators in registers over the whole reduction,
// then either the raw int32 sums or the output stage (requantize_one's float operations,
// lane by lane) straight to uint8. Compiled with target attributes, so one binary carries
// every kernel and the CPU decides at run time.
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_*, GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
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

template <typename T>
int32_t load_int32(const T* p) {
  int32_t value;
  std::memcpy(&value, p, 4);
  return value;
}

// Where a tile's results go: raw int32, or uint8 through the stage.
struct Output {
  int32_t* raw = nullptr;
  uint8_t* bytes = nullptr;
  int64_t stride = 0;
  const FusedStage* stage = nullptr;
};

// ---- generic --------------------------------------------------------------------------

void multiply_generic(const Output& out, const GemmRows& a, int64_t rows, const int8_t* w, int64_t n,
                      int64_t taps, int64_t run) {
  const auto* base = static_cast<const uint8_t*>(a.base);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int32_t total = 0;
      for (int64_t t = 0; t < taps; ++t) {
        const uint8_t* x = base + a.row_offsets[i] + a.tap_offsets[t];
        const int8_t* wj = w + (j * taps + t) * run;
        for (int64_t p = 0; p < run; ++p) total += static_cast<int32_t>(x[p]) * wj[p];
      }
      if (out.raw)
        out.raw[i * out.stride + j] = total;
      else
        out.bytes[i * out.stride + j] = requantize_one(
            total - out.stage->offsets[j], out.stage->multiplier[j], out.stage->bias[j], out.stage->stage);
    }
}

// ---- avx512_vnni: w packed [N/16][K'/4][16 columns][4 bytes] ----------------------------

template <int kRows, int kBlocks>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void vnni_tile(
    const Output& out, int64_t first_column, const uint8_t* base, const int64_t* row_offsets,
    const int64_t* tap_offsets, int64_t taps, int64_t groups_per_tap, const int8_t* w, int64_t block_stride,
    int64_t columns_left) {
  __m512i acc[kRows][kBlocks];
  for (int r = 0; r < kRows; ++r)
    for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm512_setzero_si512();
  const uint8_t* rows[kRows];
  for (int r = 0; r < kRows; ++r) rows[r] = base + row_offsets[r];
  const int8_t* wp = w;
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t tap = tap_offsets[t];
    for (int64_t g = 0; g < groups_per_tap; ++g, wp += 64) {
      __m512i wv[kBlocks];
      for (int b = 0; b < kBlocks; ++b) wv[b] = _mm512_loadu_si512(wp + b * block_stride);
      for (int r = 0; r < kRows; ++r) {
        const __m512i av = _mm512_set1_epi32(load_int32(rows[r] + tap + 4 * g));
        for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], av, wv[b]);
      }
    }
  }
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t left = columns_left - 16 * b, column = first_column + 16 * b;
    const __mmask16 mask = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    if (out.raw) {
      for (int r = 0; r < kRows; ++r)
        _mm512_mask_storeu_epi32(out.raw + r * out.stride + column, mask, acc[r][b]);
      continue;
    }
    const FusedStage& s = *out.stage;
    const __m512i offsets = _mm512_loadu_si512(s.offsets.data() + column);
    const __m512 multiplier = _mm512_loadu_ps(s.multiplier.data() + column);
    const __m512 bias = _mm512_loadu_ps(s.bias.data() + column);
    for (int r = 0; r < kRows; ++r) {
      // requantize_one, lane by lane: multiplier·(f32(acc) + bias), ReLU, + zp, rint, clamp.
      __m512 v = _mm512_mul_ps(multiplier,
                               _mm512_add_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][b], offsets)), bias));
      if (s.has_relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
      v = _mm512_roundscale_ps(_mm512_add_ps(v, _mm512_set1_ps(s.zero_point)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(s.quant_min)), _mm512_set1_ps(s.quant_max));
      _mm_mask_storeu_epi8(out.bytes + r * out.stride + column, mask,
                           _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v)));
    }
  }
}

template <int kBlocks, int kRows>
void vnni_columns(const Output& out, int64_t first_column, const GemmRows& a, int64_t rows, int64_t taps,
                  int64_t groups_per_tap, const int8_t* w, int64_t block_stride, int64_t columns_left) {
  const auto* base = static_cast<const uint8_t*>(a.base);
  int64_t i = 0;
  auto shifted = [&](int64_t row) {
    Output o = out;
    if (o.raw) o.raw += row * o.stride;
    if (o.bytes) o.bytes += row * o.stride;
    return o;
  };
  for (; i + kRows <= rows; i += kRows)
    vnni_tile<kRows, kBlocks>(shifted(i), first_column, base, a.row_offsets + i, a.tap_offsets, taps,
                              groups_per_tap, w, block_stride, columns_left);
  for (; i < rows; ++i)
    vnni_tile<1, kBlocks>(shifted(i), first_column, base, a.row_offsets + i, a.tap_offsets, taps,
                          groups_per_tap, w, block_stride, columns_left);
}

void multiply_vnni(const Output& out, const GemmRows& a, int64_t rows, const int8_t* w, int64_t n,
                   int64_t taps, int64_t padded_run) {
  const int64_t groups_per_tap = padded_run / 4, block_stride = taps * padded_run * 16;
  for (int64_t j = 0; j < n; j += 64) {  // up to 4 blocks of 16 columns per pass over a
    const int64_t columns_left = n - j;
    const int8_t* wj = w + (j / 16) * block_stride;
    switch (std::min<int64_t>(4, (columns_left + 15) / 16)) {
      case 4:
        vnni_columns<4, 6>(out, j, a, rows, taps, groups_per_tap, wj, block_stride, columns_left);
        break;
      case 3:
        vnni_columns<3, 8>(out, j, a, rows, taps, groups_per_tap, wj, block_stride, columns_left);
        break;
      case 2:
        vnni_columns<2, 12>(out, j, a, rows, taps, groups_per_tap, wj, block_stride, columns_left);
        break;
      default:
        vnni_columns<1, 12>(out, j, a, rows, taps, groups_per_tap, wj, block_stride, columns_left);
    }
  }
}

// ---- avx2: a as int16, w packed [N/8][K'/2][8 columns][2 words] -------------------------

template <int kRows, int kBlocks>
__attribute__((target("avx2,fma"))) void avx2_tile(const Output& out, int64_t first_column,
                                                   const int16_t* base, const int64_t* row_offsets,
                                                   const int64_t* tap_offsets, int64_t taps,
                                                   int64_t pairs_per_tap, const int16_t* w,
                                                   int64_t block_stride, int64_t columns_left) {
  __m256i acc[kRows][kBlocks];
  for (int r = 0; r < kRows; ++r)
    for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm256_setzero_si256();
  const int16_t* rows[kRows];
  for (int r = 0; r < kRows; ++r) rows[r] = base + row_offsets[r];
  const int16_t* wp = w;
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t tap = tap_offsets[t];
    for (int64_t g = 0; g < pairs_per_tap; ++g, wp += 16) {
      __m256i wv[kBlocks];
      for (int b = 0; b < kBlocks; ++b)
        wv[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + b * block_stride));
      for (int r = 0; r < kRows; ++r) {
        const __m256i av = _mm256_set1_epi32(load_int32(rows[r] + tap + 2 * g));
        // vpmaddwd: x0·w0 + x1·w1 per column, int16 products summed into int32 — exact.
        for (int b = 0; b < kBlocks; ++b)
          acc[r][b] = _mm256_add_epi32(acc[r][b], _mm256_madd_epi16(av, wv[b]));
      }
    }
  }
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t left = columns_left - 8 * b, column = first_column + 8 * b,
                  count = std::min<int64_t>(8, left);
    if (out.raw) {
      alignas(32) int32_t lanes[8];
      for (int r = 0; r < kRows; ++r) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[r][b]);
        std::memcpy(out.raw + r * out.stride + column, lanes, count * sizeof(int32_t));
      }
      continue;
    }
    const FusedStage& s = *out.stage;
    const __m256i offsets = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.offsets.data() + column));
    const __m256 multiplier = _mm256_loadu_ps(s.multiplier.data() + column);
    const __m256 bias = _mm256_loadu_ps(s.bias.data() + column);
    for (int r = 0; r < kRows; ++r) {
      __m256 v = _mm256_mul_ps(multiplier,
                               _mm256_add_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][b], offsets)), bias));
      if (s.has_relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
      v = _mm256_round_ps(_mm256_add_ps(v, _mm256_set1_ps(s.zero_point)),
                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(s.quant_min)), _mm256_set1_ps(s.quant_max));
      const __m256i q = _mm256_cvtps_epi32(v);
      const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      alignas(16) uint8_t bytes[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(bytes), _mm_packus_epi16(words, words));
      std::memcpy(out.bytes + r * out.stride + column, bytes, count);
    }
  }
}

template <int kBlocks, int kRows>
void avx2_columns(const Output& out, int64_t first_column, const GemmRows& a, int64_t rows, int64_t taps,
                  int64_t pairs_per_tap, const int16_t* w, int64_t block_stride, int64_t columns_left) {
  const auto* base = static_cast<const int16_t*>(a.base);
  auto shifted = [&](int64_t row) {
    Output o = out;
    if (o.raw) o.raw += row * o.stride;
    if (o.bytes) o.bytes += row * o.stride;
    return o;
  };
  int64_t i = 0;
  for (; i + kRows <= rows; i += kRows)
    avx2_tile<kRows, kBlocks>(shifted(i), first_column, base, a.row_offsets + i, a.tap_offsets, taps,
                              pairs_per_tap, w, block_stride, columns_left);
  for (; i < rows; ++i)
    avx2_tile<1, kBlocks>(shifted(i), first_column, base, a.row_offsets + i, a.tap_offsets, taps,
                          pairs_per_tap, w, block_stride, columns_left);
}

void multiply_avx2(const Output& out, const GemmRows& a, int64_t rows, const int16_t* w, int64_t n,
                   int64_t taps, int64_t padded_run) {
  const int64_t pairs_per_tap = padded_run / 2, block_stride = taps * padded_run * 8;
  for (int64_t j = 0; j < n; j += 24) {  // up to 3 blocks of 8 columns per pass
    const int64_t columns_left = n - j;
    const int16_t* wj = w + (j / 8) * block_stride;
    switch (std::min<int64_t>(3, (columns_left + 7) / 8)) {
      case 3:
        avx2_columns<3, 4>(out, j, a, rows, taps, pairs_per_tap, wj, block_stride, columns_left);
        break;
      case 2:
        avx2_columns<2, 6>(out, j, a, rows, taps, pairs_per_tap, wj, block_stride, columns_left);
        break;
      default:
        avx2_columns<1, 12>(out, j, a, rows, taps, pairs_per_tap, wj, block_stride, columns_left);
    }
  }
}

}  // namespace

PackedWeights::PackedWeights(const int8_t* w, int64_t n, int64_t taps, int64_t run_length, Isa isa)
    : n_(n), taps_(taps), run_length_(run_length), isa_(isa) {
  QF_CHECK(isa_supported(isa), "int8 gemm: this CPU does not support ", isa_name(isa));
  QF_CHECK(n >= 1 && taps >= 1 && run_length >= 1, "int8 gemm: empty weights (", n, "x", taps, "x",
           run_length, ")");
  column_sums_.assign(n, 0);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t p = 0; p < taps * run_length; ++p) column_sums_[j] += w[j * taps * run_length + p];
  const int64_t group = isa == Isa::avx512_vnni ? 4 : isa == Isa::avx2 ? 2 : 1;
  const int64_t lanes = isa == Isa::avx512_vnni ? 16 : isa == Isa::avx2 ? 8 : 1;
  padded_run_ = round_up(run_length, group);
  padded_n_ = round_up(n, lanes);
  const int64_t padded_k = taps * padded_run_, groups = padded_k / group;
  // Element (j, t, p) goes to k' = t·padded_run + p, in group k'/group, lane k'%group.
  auto place = [&](auto& packed) {
    packed.assign(padded_n_ * padded_k, 0);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t p = 0; p < run_length; ++p) {
          const int64_t k = t * padded_run_ + p;
          packed[(((j / lanes) * groups + k / group) * lanes + j % lanes) * group + k % group] =
              w[(j * taps + t) * run_length + p];
        }
  };
  if (isa == Isa::avx2)
    place(words_);
  else
    place(bytes_);
}

void PackedWeights::multiply(int32_t* c, int64_t ldc, const GemmRows& a, int64_t rows) const {
  const Output out{.raw = c, .stride = ldc};
  switch (isa_) {
    case Isa::generic:
      multiply_generic(out, a, rows, bytes_.data(), n_, taps_, run_length_);
      break;
    case Isa::avx512_vnni:
      multiply_vnni(out, a, rows, bytes_.data(), n_, taps_, padded_run_);
      break;
    case Isa::avx2:
      multiply_avx2(out, a, rows, words_.data(), n_, taps_, padded_run_);
      break;
  }
}

FusedStage::FusedStage(const std::vector<int32_t>& column_offsets, const OutputStage& s, Allow allow)
    : stage(s),
      zero_point(static_cast<float>(s.zero_point)),
      quant_min(static_cast<float>(s.quant_min)),
      quant_max(static_cast<float>(s.quant_max)),
      has_relu(s.has_relu) {
  const std::size_t n = column_offsets.size(), padded = (n + 15) / 16 * 16;
  QF_CHECK(
      (allow == Allow::float_output || !s.is_float_output) && s.multiplier.size() == n && s.bias.size() == n,
      "int8 gemm: expected a uint8 output stage for ", n, " columns");
  offsets.assign(padded, 0), multiplier.assign(padded, 0), bias.assign(padded, 0);
  std::copy(column_offsets.begin(), column_offsets.end(), offsets.begin());
  std::copy(s.multiplier.begin(), s.multiplier.end(), multiplier.begin());
  std::copy(s.bias.begin(), s.bias.end(), bias.begin());
}

void PackedWeights::multiply_requantize(uint8_t* y, int64_t ldy, const GemmRows& a, int64_t rows,
                                        const FusedStage& stage) const {
  QF_CHECK(!stage.stage.is_float_output && static_cast<int64_t>(stage.stage.multiplier.size()) == n_,
           "int8 gemm: a uint8 output stage for ", n_, " columns expected");
  const Output out{.bytes = y, .stride = ldy, .stage = &stage};
  switch (isa_) {
    case Isa::generic:
      multiply_generic(out, a, rows, bytes_.data(), n_, taps_, run_length_);
      break;
    case Isa::avx512_vnni:
      multiply_vnni(out, a, rows, bytes_.data(), n_, taps_, padded_run_);
      break;
    case Isa::avx2:
      multiply_avx2(out, a, rows, words_.data(), n_, taps_, padded_run_);
      break;
  }
}

}  // namespace qforge::quant::int8
