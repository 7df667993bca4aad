// The fast integer kernels (quant/int8/kernels.h): conv and linear as tiles of
// gather → GEMM (gemm.h) → output stage, split across threads by tiles of rows; the
// output stage in SIMD that repeats requantize_one's float operations lane by lane; the
// elementwise ops and pools as loops over the contiguous channel axis (NHWC), which the
// compiler vectorizes. Every function returns exactly the reference's bytes.
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_*, GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/threading.h"
#include "quant/int8/kernels.h"

namespace qforge::quant::int8::fast {

namespace {

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Rows per tile: a tile's gathered rows and int32 accumulators stay in L2.
constexpr int64_t kTileRows = 96;

// ---- output stage ------------------------------------------------------------------------

void requantize_row_scalar(uint8_t* y, const int32_t* acc, int64_t first, int64_t n, const int32_t* offsets,
                           const OutputStage& s) {
  for (int64_t j = first; j < n; ++j)
    y[j] = requantize_one(acc[j] - offsets[j], s.multiplier[j], s.bias[j], s);
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void requantize_row_avx512(uint8_t* y,
                                                                                const int32_t* acc, int64_t n,
                                                                                const int32_t* offsets,
                                                                                const OutputStage& s) {
  const __m512 zero_point = _mm512_set1_ps(static_cast<float>(s.zero_point));
  const __m512 lo = _mm512_set1_ps(static_cast<float>(s.quant_min));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(s.quant_max));
  const __m512 zero = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512i a = _mm512_sub_epi32(_mm512_loadu_si512(acc + j), _mm512_loadu_si512(offsets + j));
    // v = multiplier·(f32(acc) + bias), then max(v, 0), + zp, rint, clamp: requantize_one's order.
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(s.multiplier.data() + j),
                             _mm512_add_ps(_mm512_cvtepi32_ps(a), _mm512_loadu_ps(s.bias.data() + j)));
    if (s.has_relu) v = _mm512_max_ps(v, zero);
    v = _mm512_roundscale_ps(_mm512_add_ps(v, zero_point), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + j), _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v)));
  }
  requantize_row_scalar(y, acc, j, n, offsets, s);
}

__attribute__((target("avx2,fma"))) void requantize_row_avx2(uint8_t* y, const int32_t* acc, int64_t n,
                                                             const int32_t* offsets, const OutputStage& s) {
  const __m256 zero_point = _mm256_set1_ps(static_cast<float>(s.zero_point));
  const __m256 lo = _mm256_set1_ps(static_cast<float>(s.quant_min));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(s.quant_max));
  const __m256 zero = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256i a = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j)),
                                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(offsets + j)));
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s.multiplier.data() + j),
                             _mm256_add_ps(_mm256_cvtepi32_ps(a), _mm256_loadu_ps(s.bias.data() + j)));
    if (s.has_relu) v = _mm256_max_ps(v, zero);
    v = _mm256_round_ps(_mm256_add_ps(v, zero_point), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    const __m256i q = _mm256_cvtps_epi32(v);
    const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + j), _mm_packus_epi16(words, words));
  }
  requantize_row_scalar(y, acc, j, n, offsets, s);
}

void output_rows(uint8_t* y, int64_t ldy, const int32_t* acc, int64_t ldc, int64_t rows, int64_t n,
                 const int32_t* offsets, const OutputStage& s, Isa isa) {
  requantize_rows(y, ldy, acc, ldc, rows, n, offsets, s, isa);
}

void output_rows(float* y, int64_t ldy, const int32_t* acc, int64_t ldc, int64_t rows, int64_t n,
                 const int32_t* offsets, const OutputStage& s, Isa) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j)
      y[r * ldy + j] =
          dequantize_accumulator(acc[r * ldc + j] - offsets[j], s.multiplier[j], s.bias[j], s.has_relu);
}

template <typename Out>
void check_output_kind(const OutputStage& stage, const char* layer) {
  constexpr bool is_float = std::is_same_v<Out, float>;
  QF_CHECK(stage.is_float_output == is_float, layer, ": the output stage gives ",
           stage.is_float_output ? "float" : "uint8", " values, asked for ", is_float ? "float" : "uint8");
}

}  // namespace

void requantize_rows(uint8_t* y, int64_t ldy, const int32_t* acc, int64_t ldc, int64_t rows, int64_t n,
                     const int32_t* column_offsets, const OutputStage& stage, Isa isa) {
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* out = y + r * ldy;
    const int32_t* row = acc + r * ldc;
    if (isa == Isa::avx512_vnni)
      requantize_row_avx512(out, row, n, column_offsets, stage);
    else if (isa == Isa::avx2)
      requantize_row_avx2(out, row, n, column_offsets, stage);
    else
      requantize_row_scalar(out, row, 0, n, column_offsets, stage);
  }
}

// ---- linear ------------------------------------------------------------------------------

LinearLayer::LinearLayer(const int8_t* w, int64_t n, int64_t k, int32_t x_zero_point, OutputStage stage,
                         Isa isa)
    : packed_(w, n, k, isa), stage_(std::move(stage)) {
  QF_CHECK(static_cast<int64_t>(stage_.multiplier.size()) == n, "int8 linear: output stage for ",
           stage_.multiplier.size(), " channels, weights have ", n);
  for (int32_t sum : packed_.column_sums()) column_offsets_.push_back(x_zero_point * sum);
}

template <typename Out>
void LinearLayer::run_rows(Out* y, const uint8_t* x, int64_t m) const {
  check_output_kind<Out>(stage_, "int8 linear");
  const int64_t n = packed_.n(), k = packed_.k(), lda = packed_.padded_k();
  const int64_t tiles = (m + kTileRows - 1) / kTileRows;
#pragma omp parallel if (tiles > 1 && m * n * k >= (1 << 16))
  {
    std::vector<int32_t> acc(kTileRows * n);
    std::vector<uint8_t> padded(lda == k ? 0 : kTileRows * lda, 0);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t first = t * kTileRows, rows = std::min(kTileRows, m - first);
      const uint8_t* a = x + first * k;
      if (lda != k) {  // rows must be readable for padded_k bytes
        for (int64_t r = 0; r < rows; ++r) std::memcpy(padded.data() + r * lda, a + r * k, k);
        a = padded.data();
      }
      packed_.multiply(acc.data(), n, a, lda, rows);
      output_rows(y + first * n, n, acc.data(), n, rows, n, column_offsets_.data(), stage_, packed_.isa());
    }
  }
}

void LinearLayer::run(uint8_t* y, const uint8_t* x, int64_t m) const { run_rows(y, x, m); }
void LinearLayer::run(float* y, const uint8_t* x, int64_t m) const { run_rows(y, x, m); }

// ---- conv --------------------------------------------------------------------------------

Conv2dLayer::Conv2dLayer(const int8_t* w, const Conv2dShape& s, int32_t x_zero_point, OutputStage stage,
                         Isa isa)
    : shape_(s), x_zero_point_(x_zero_point), stage_(std::move(stage)) {
  QF_CHECK(s.groups >= 1 && s.in_channels % s.groups == 0 && s.out_channels % s.groups == 0,
           "int8 conv2d: channels ", s.in_channels, " -> ", s.out_channels, " do not split into ", s.groups,
           " groups");
  QF_CHECK(static_cast<int64_t>(stage_.multiplier.size()) == s.out_channels, "int8 conv2d: output stage for ",
           stage_.multiplier.size(), " channels, weights have ", s.out_channels);
  const int64_t taps = s.kernel_height * s.kernel_width;
  const int64_t in_per_group = s.in_channels / s.groups, out_per_group = s.out_channels / s.groups;
  // Dense (block-diagonal) or one GEMM per group: the cheaper in multiply-adds after
  // padding the output columns to a vector of 16, with a factor 4 in favour of one GEMM
  // (per-group GEMMs on a few columns leave most lanes and the loop overhead idle).
  const double dense_cost = static_cast<double>(taps * s.in_channels) * round_up(s.out_channels, 16);
  const double grouped_cost =
      static_cast<double>(s.groups) * taps * in_per_group * round_up(out_per_group, 16);
  const bool is_dense = s.groups == 1 || dense_cost <= 4 * grouped_cost;
  groups_run_ = is_dense ? 1 : s.groups;
  group_k_ = is_dense ? taps * s.in_channels : taps * in_per_group;
  const int64_t out_per_gemm = is_dense ? s.out_channels : out_per_group;
  // The im2col row: per GEMM, taps × channels (kh, kw, c), padded to the GEMM's row length.
  std::vector<int8_t> gemm_weights(out_per_gemm * group_k_);
  for (int64_t g = 0; g < groups_run_; ++g) {
    std::fill(gemm_weights.begin(), gemm_weights.end(), int8_t{0});
    for (int64_t o = 0; o < out_per_gemm; ++o) {
      const int64_t out_channel = g * out_per_gemm + o, weight_group = out_channel / out_per_group;
      for (int64_t c = 0; c < in_per_group; ++c)
        for (int64_t t = 0; t < taps; ++t) {
          // column of (tap t, channel c): dense rows hold every input channel
          const int64_t channel = is_dense ? weight_group * in_per_group + c : c;
          const int64_t channels_in_row = is_dense ? s.in_channels : in_per_group;
          gemm_weights[o * group_k_ + t * channels_in_row + channel] =
              w[(out_channel * in_per_group + c) * taps + t];
        }
    }
    packed_.emplace_back(gemm_weights.data(), out_per_gemm, group_k_, isa);
    for (int32_t sum : packed_.back().column_sums()) column_offsets_.push_back(x_zero_point * sum);
  }
  group_lda_ = packed_[0].padded_k();
  lda_ = group_lda_ * groups_run_;
}

void Conv2dLayer::gather_rows(uint8_t* a, int64_t first_row, int64_t rows, const uint8_t* x) const {
  const Conv2dShape& s = shape_;
  const int64_t out_width = s.out_width(), pixels = s.out_height() * out_width;
  const int64_t channels_in_row = groups_run_ == 1 ? s.in_channels : s.in_channels / s.groups;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = first_row + r, n = row / pixels, oh = row % pixels / out_width, ow = row % out_width;
    uint8_t* out = a + r * lda_;
    for (int64_t g = 0; g < groups_run_; ++g) {
      uint8_t* segment = out + g * group_lda_;
      for (int64_t kh = 0; kh < s.kernel_height; ++kh)
        for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
          uint8_t* tap = segment + (kh * s.kernel_width + kw) * channels_in_row;
          const int64_t ih = oh * s.stride_height - s.padding_height + kh * s.dilation_height;
          const int64_t iw = ow * s.stride_width - s.padding_width + kw * s.dilation_width;
          if (ih < 0 || ih >= s.in_height || iw < 0 || iw >= s.in_width)
            std::memset(tap, x_zero_point_, channels_in_row);  // (zx − zx)·w = 0
          else
            std::memcpy(tap,
                        x + ((n * s.in_height + ih) * s.in_width + iw) * s.in_channels + g * channels_in_row,
                        channels_in_row);
        }
    }
  }
}

template <typename Out>
void Conv2dLayer::run_rows(Out* y, const uint8_t* x, int64_t batch) const {
  check_output_kind<Out>(stage_, "int8 conv2d");
  const Conv2dShape& s = shape_;
  const int64_t m = batch * s.out_height() * s.out_width(), out_channels = s.out_channels;
  const int64_t out_per_gemm = packed_[0].n();
  const int64_t tiles = (m + kTileRows - 1) / kTileRows;
  // A 1×1, stride-1, unpadded conv reads its rows straight from x (NHWC is already (M,C)).
  const bool is_pointwise = s.kernel_height == 1 && s.kernel_width == 1 && s.stride_height == 1 &&
                            s.stride_width == 1 && s.padding_height == 0 && s.padding_width == 0 &&
                            groups_run_ == 1 && lda_ == s.in_channels;
#pragma omp parallel if (tiles > 1)
  {
    std::vector<int32_t> acc(kTileRows * out_channels);
    std::vector<uint8_t> rows_buffer(is_pointwise ? 0 : kTileRows * lda_, 0);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t first = t * kTileRows, rows = std::min(kTileRows, m - first);
      const uint8_t* a = x + first * s.in_channels;
      if (!is_pointwise) {
        gather_rows(rows_buffer.data(), first, rows, x);
        a = rows_buffer.data();
      }
      for (int64_t g = 0; g < groups_run_; ++g)
        packed_[g].multiply(acc.data() + g * out_per_gemm, out_channels, a + g * group_lda_, lda_, rows);
      output_rows(y + first * out_channels, out_channels, acc.data(), out_channels, rows, out_channels,
                  column_offsets_.data(), stage_, packed_[0].isa());
    }
  }
}

void Conv2dLayer::run(uint8_t* y, const uint8_t* x, int64_t batch) const { run_rows(y, x, batch); }
void Conv2dLayer::run(float* y, const uint8_t* x, int64_t batch) const { run_rows(y, x, batch); }

// ---- elementwise and pools -----------------------------------------------------------------

void quantize(uint8_t* q, const float* x, int64_t n, const ActivationQuant& p) {
  const float inverse_scale = 1.0f / p.scale;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) q[i] = quantize_one(x[i], inverse_scale, p);
}

void dequantize(float* x, const uint8_t* q, int64_t n, const ActivationQuant& p) {
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) x[i] = dequantize_one(q[i], p);
}

void relu(uint8_t* y, const uint8_t* x, int64_t n, int32_t zero_point) {
  const uint8_t floor = static_cast<uint8_t>(zero_point);
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > floor ? x[i] : floor;
}

void add(uint8_t* y, const uint8_t* a, const uint8_t* b, int64_t n, const ActivationQuant& pa,
         const ActivationQuant& pb, const ActivationQuant& py, bool has_relu) {
  const float inverse_scale = 1.0f / py.scale;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    float sum = dequantize_one(a[i], pa) + dequantize_one(b[i], pb);
    if (has_relu) sum = sum > 0.0f ? sum : 0.0f;
    y[i] = quantize_one(sum, inverse_scale, py);
  }
}

void max_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s) {
  const int64_t c_count = s.channels;
#pragma omp parallel for collapse(2) \
    schedule(static) if (s.batch * s.out_height * s.out_width * c_count >= kParallelGrain)
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oh = 0; oh < s.out_height; ++oh)
      for (int64_t ow = 0; ow < s.out_width; ++ow) {
        uint8_t* out = y + ((n * s.out_height + oh) * s.out_width + ow) * c_count;
        std::memset(out, 0, c_count);
        for (int64_t kh = 0; kh < s.kernel_height; ++kh) {
          const int64_t ih = oh * s.stride_height - s.padding_height + kh * s.dilation_height;
          if (ih < 0 || ih >= s.in_height) continue;
          for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
            const int64_t iw = ow * s.stride_width - s.padding_width + kw * s.dilation_width;
            if (iw < 0 || iw >= s.in_width) continue;
            const uint8_t* in = x + ((n * s.in_height + ih) * s.in_width + iw) * c_count;
            for (int64_t c = 0; c < c_count; ++c) out[c] = std::max(out[c], in[c]);
          }
        }
      }
}

namespace {
// Σ over the window [h0,h1)×[w0,w1) per channel into sums (C), then the channels_last rounding.
void average_window(uint8_t* out, int32_t* sums, const uint8_t* image, const PoolShape& s, int64_t h0,
                    int64_t h1, int64_t w0, int64_t w1, int64_t divisor, int32_t zero_point) {
  std::fill(sums, sums + s.channels, 0);
  for (int64_t ih = h0; ih < h1; ++ih)
    for (int64_t iw = w0; iw < w1; ++iw) {
      const uint8_t* in = image + (ih * s.in_width + iw) * s.channels;
      for (int64_t c = 0; c < s.channels; ++c) sums[c] += in[c];
    }
  const int32_t correction = zero_point * static_cast<int32_t>((h1 - h0) * (w1 - w0));
  const float multiplier = 1.0f / static_cast<float>(divisor);
  for (int64_t c = 0; c < s.channels; ++c) {
    const float q = round_half_even(static_cast<float>(sums[c] - correction) * multiplier) +
                    static_cast<float>(zero_point);
    out[c] = static_cast<uint8_t>(std::clamp(q, 0.0f, 255.0f));
  }
}
}  // namespace

void avg_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s, const AvgPoolOptions& options,
                int32_t zero_point) {
#pragma omp parallel if (s.batch * s.out_height * s.out_width * s.channels >= kParallelGrain)
  {
    std::vector<int32_t> sums(s.channels);
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t oh = 0; oh < s.out_height; ++oh)
        for (int64_t ow = 0; ow < s.out_width; ++ow) {
          int64_t h0 = oh * s.stride_height - s.padding_height, w0 = ow * s.stride_width - s.padding_width;
          int64_t h1 = std::min(h0 + s.kernel_height, s.in_height + s.padding_height);
          int64_t w1 = std::min(w0 + s.kernel_width, s.in_width + s.padding_width);
          const int64_t padded_count = (h1 - h0) * (w1 - w0);
          h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
          h1 = std::min(h1, s.in_height), w1 = std::min(w1, s.in_width);
          const int64_t divisor = options.divisor_override > 0 ? options.divisor_override
                                  : options.count_include_pad  ? padded_count
                                                               : (h1 - h0) * (w1 - w0);
          average_window(y + ((n * s.out_height + oh) * s.out_width + ow) * s.channels, sums.data(),
                         x + n * s.in_height * s.in_width * s.channels, s, h0, h1, w0, w1, divisor,
                         zero_point);
        }
  }
}

void adaptive_avg_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s, int32_t zero_point) {
#pragma omp parallel if (s.batch * s.in_height * s.in_width * s.channels >= kParallelGrain)
  {
    std::vector<int32_t> sums(s.channels);
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t oh = 0; oh < s.out_height; ++oh)
        for (int64_t ow = 0; ow < s.out_width; ++ow) {
          const int64_t h0 = oh * s.in_height / s.out_height;
          const int64_t h1 = ((oh + 1) * s.in_height + s.out_height - 1) / s.out_height;
          const int64_t w0 = ow * s.in_width / s.out_width;
          const int64_t w1 = ((ow + 1) * s.in_width + s.out_width - 1) / s.out_width;
          average_window(y + ((n * s.out_height + oh) * s.out_width + ow) * s.channels, sums.data(),
                         x + n * s.in_height * s.in_width * s.channels, s, h0, h1, w0, w1,
                         (h1 - h0) * (w1 - w0), zero_point);
        }
  }
}

}  // namespace qforge::quant::int8::fast
