// The fast integer kernels (quant/int8/kernels.h): conv and linear as tiles of rows
// through the implicit GEMM with its fused output stage (gemm.h), split across threads;
// the elementwise ops and pools as loops over the contiguous channel axis (NHWC), which
// the compiler vectorizes. Every function returns exactly the reference's bytes.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/threading.h"
#include "quant/int8/kernels.h"

namespace qforge::quant::int8::fast {

namespace {

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Rows per tile: a tile's row offsets and, for float outputs, its int32 sums stay small.
constexpr int64_t kTileRows = 96;
// Elements a kernel may read past a run (Note [Implicit GEMM]), with room to spare.
constexpr int64_t kSlack = 64;

template <typename Out>
void check_output_kind(const OutputStage& stage, const char* layer) {
  constexpr bool is_float = std::is_same_v<Out, float>;
  QF_CHECK(stage.is_float_output == is_float, layer, ": the output stage gives ",
           stage.is_float_output ? "float" : "uint8", " values, asked for ", is_float ? "float" : "uint8");
}

// One tile through a GEMM: uint8 straight from the fused stage, or float from int32 sums.
void run_tile(uint8_t* y, int64_t ldy, const PackedWeights& w, const GemmRows& rows, int64_t count,
              const FusedStage& fused, std::vector<int32_t>&) {
  w.multiply_requantize(y, ldy, rows, count, fused);
}

void run_tile(float* y, int64_t ldy, const PackedWeights& w, const GemmRows& rows, int64_t count,
              const FusedStage& fused, std::vector<int32_t>& acc) {
  const int64_t n = w.n();
  const int32_t* offsets = fused.offsets.data();
  const OutputStage& s = fused.stage;
  acc.resize(count * n);
  w.multiply(acc.data(), n, rows, count);
  for (int64_t r = 0; r < count; ++r)
    for (int64_t j = 0; j < n; ++j)
      y[r * ldy + j] =
          dequantize_accumulator(acc[r * n + j] - offsets[j], s.multiplier[j], s.bias[j], s.has_relu);
}

OutputStage slice(const OutputStage& stage, int64_t first, int64_t count) {
  OutputStage part = stage;
  part.multiplier.assign(stage.multiplier.begin() + first, stage.multiplier.begin() + first + count);
  part.bias.assign(stage.bias.begin() + first, stage.bias.begin() + first + count);
  return part;
}

}  // namespace

// ---- linear ------------------------------------------------------------------------------

LinearLayer::LinearLayer(const int8_t* w, int64_t n, int64_t k, int32_t x_zero_point, OutputStage stage,
                         Isa isa)
    : packed_(w, n, 1, k, isa), stage_(std::move(stage)) {
  QF_CHECK(static_cast<int64_t>(stage_.multiplier.size()) == n, "int8 linear: output stage for ",
           stage_.multiplier.size(), " channels, weights have ", n);
  std::vector<int32_t> column_offsets;
  for (int32_t sum : packed_.column_sums()) column_offsets.push_back(x_zero_point * sum);
  fused_.emplace(column_offsets, stage_, FusedStage::Allow::float_output);
}

template <typename Out>
void LinearLayer::run_rows(Out* y, const uint8_t* x, int64_t m, const FusedStage& fused) const {
  check_output_kind<Out>(fused.stage, "int8 linear");
  const int64_t n = packed_.n(), k = packed_.k();
  const int64_t tiles = (m + kTileRows - 1) / kTileRows;
  // Rows are read in place when the kernel takes bytes and k is a whole number of its
  // groups; otherwise a tile is copied (widened for avx2) with room to read past k.
  const bool in_place = packed_.element_size() == 1 && k % 4 == 0;
  const int64_t stride = round_up(k, 4);
  // Not inside a region: a recurrent layer's row blocks (parallel_row_blocks) call this per thread.
#pragma omp parallel if (tiles > 1 && m * n * k >= (1 << 16) && !omp_in_parallel())
  {
    std::vector<int32_t> acc;
    std::vector<uint8_t> bytes(in_place || packed_.element_size() != 1 ? 0 : kTileRows * stride + kSlack, 0);
    std::vector<int16_t> words(packed_.element_size() == 2 ? kTileRows * stride + kSlack : 0, 0);
    std::vector<int64_t> row_offsets(kTileRows);
    const int64_t tap_offsets[1] = {0};
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t first = t * kTileRows, rows = std::min(kTileRows, m - first);
      const uint8_t* a = x + first * k;
      const void* base = a;
      for (int64_t r = 0; r < rows; ++r) row_offsets[r] = r * (in_place ? k : stride);
      if (!words.empty()) {
        for (int64_t r = 0; r < rows; ++r) std::copy_n(a + r * k, k, words.data() + r * stride);
        base = words.data();
      } else if (!in_place) {
        for (int64_t r = 0; r < rows; ++r) std::memcpy(bytes.data() + r * stride, a + r * k, k);
        base = bytes.data();
      }
      run_tile(y + first * n, n, packed_, {base, row_offsets.data(), tap_offsets}, rows, fused, acc);
    }
  }
}

void LinearLayer::run(uint8_t* y, const uint8_t* x, int64_t m) const { run_rows(y, x, m, *fused_); }
void LinearLayer::run(float* y, const uint8_t* x, int64_t m) const { run_rows(y, x, m, *fused_); }

void LinearLayer::run(float* y, const uint8_t* x, int64_t m, int32_t x_zero_point,
                      const OutputStage& stage) const {
  std::vector<int32_t> column_offsets;
  for (int32_t sum : packed_.column_sums()) column_offsets.push_back(x_zero_point * sum);
  run_rows(y, x, m, FusedStage(column_offsets, stage, FusedStage::Allow::float_output));
}

void LinearLayer::run(float* y, const uint8_t* x, int64_t m, const FusedStage& stage) const {
  QF_CHECK(static_cast<int64_t>(stage.offsets.size()) >= packed_.n() &&
               static_cast<int64_t>(stage.stage.multiplier.size()) == packed_.n(),
           "int8 linear: a stage for ", stage.stage.multiplier.size(), " columns, weights have ",
           packed_.n());
  run_rows(y, x, m, stage);
}

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
  padded_height_ = s.in_height + 2 * s.padding_height;
  padded_width_ = s.in_width + 2 * s.padding_width;
  // A dense GEMM with undilated columns reads one run of KW·C bytes per kernel row;
  // otherwise one run of the group's channels per tap.
  const bool row_runs = is_dense && s.dilation_width == 1;
  const int64_t channels = is_dense ? s.in_channels : in_per_group;
  const int64_t gemm_taps = row_runs ? s.kernel_height : taps;
  const int64_t run = row_runs ? s.kernel_width * channels : channels;
  for (int64_t kh = 0; kh < s.kernel_height; ++kh)
    for (int64_t kw = 0; kw < (row_runs ? 1 : s.kernel_width); ++kw)
      tap_offsets_.push_back((kh * s.dilation_height * padded_width_ + kw * s.dilation_width) *
                             s.in_channels);
  const int64_t out_per_gemm = is_dense ? s.out_channels : out_per_group;
  for (int64_t g = 0; g < (is_dense ? 1 : s.groups); ++g) {
    // The GEMM's weights (out_per_gemm, gemm_taps, run): element (o, kh[, kw], [kw,] c).
    std::vector<int8_t> matrix(out_per_gemm * gemm_taps * run, 0);
    for (int64_t o = 0; o < out_per_gemm; ++o) {
      const int64_t out_channel = g * out_per_gemm + o, weight_group = out_channel / out_per_group;
      for (int64_t c = 0; c < in_per_group; ++c)
        for (int64_t kh = 0; kh < s.kernel_height; ++kh)
          for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
            const int64_t channel = is_dense ? weight_group * in_per_group + c : c;
            const int64_t tap = row_runs ? kh : kh * s.kernel_width + kw;
            const int64_t within = row_runs ? kw * channels + channel : channel;
            matrix[(o * gemm_taps + tap) * run + within] =
                w[((out_channel * in_per_group + c) * s.kernel_height + kh) * s.kernel_width + kw];
          }
    }
    Gemm gemm{PackedWeights(matrix.data(), out_per_gemm, gemm_taps, run, isa),
              {},
              slice(stage_, g * out_per_gemm, out_per_gemm),
              g * out_per_gemm,
              is_dense ? 0 : g * in_per_group};
    std::vector<int32_t> column_offsets;
    for (int32_t sum : gemm.weights.column_sums()) column_offsets.push_back(x_zero_point * sum);
    gemm.fused.emplace(column_offsets, gemm.stage, FusedStage::Allow::float_output);
    gemms_.push_back(std::move(gemm));
  }
}

template <typename Element, typename Out>
void Conv2dLayer::run_rows(Out* y, const uint8_t* x, int64_t batch) const {
  check_output_kind<Out>(stage_, "int8 conv2d");
  const Conv2dShape& s = shape_;
  const int64_t out_height = s.out_height(), out_width = s.out_width();
  const int64_t m = batch * out_height * out_width, channels = s.in_channels;
  const int64_t image = padded_height_ * padded_width_ * channels;
  // x is read in place when it needs no padding, no widening, and no kernel reads past a
  // run (its length is whole groups of 4); otherwise from a zero-point-padded copy
  // (padding taps read zx: (zx − zx)·w = 0) with slack past the end.
  const bool in_place = std::is_same_v<Element, uint8_t> && s.padding_height == 0 && s.padding_width == 0 &&
                        gemms_[0].weights.run_length() % 4 == 0;
  // The copy lives in a per-thread buffer kept between calls (no allocation, no page
  // faults per layer); only its border and slack are set to zx, the copy fills the rest.
  // (Worker threads see their own thread_local, so they are handed the pointer.)
  thread_local std::vector<Element> scratch;
  Element* padded = nullptr;
  if (!in_place) {
    if (scratch.size() < static_cast<std::size_t>(batch * image + kSlack))
      scratch.resize(batch * image + kSlack);
    padded = scratch.data();
    const Element zx = static_cast<Element>(x_zero_point_);
    const int64_t row = padded_width_ * channels, left = s.padding_width * channels,
                  right = (padded_width_ - s.padding_width - s.in_width) * channels;
#pragma omp parallel for schedule(static) if (batch * image >= (1 << 16))
    for (int64_t n = 0; n < batch; ++n) {
      Element* picture = padded + n * image;
      std::fill_n(picture, s.padding_height * row, zx);
      std::fill_n(picture + (s.padding_height + s.in_height) * row,
                  (padded_height_ - s.padding_height - s.in_height) * row, zx);
      for (int64_t h = 0; h < s.in_height; ++h) {
        Element* to = picture + (h + s.padding_height) * row;
        std::fill_n(to, left, zx);
        std::copy_n(x + (n * s.in_height + h) * s.in_width * channels, s.in_width * channels, to + left);
        std::fill_n(to + left + s.in_width * channels, right, zx);
      }
    }
    std::fill_n(padded + batch * image, kSlack, zx);
  }
  const void* base = in_place ? static_cast<const void*>(x) : padded;
  const int64_t tiles = (m + kTileRows - 1) / kTileRows;
#pragma omp parallel if (tiles > 1)
  {
    std::vector<int32_t> acc;
    std::vector<int64_t> pixels(kTileRows), row_offsets(kTileRows);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t first = t * kTileRows, rows = std::min(kTileRows, m - first);
      // The tile's output pixels, stepped without a division per row.
      int64_t n = first / (out_height * out_width), oh = first / out_width % out_height,
              ow = first % out_width;
      for (int64_t r = 0; r < rows; ++r) {
        pixels[r] = n * image + (oh * s.stride_height * padded_width_ + ow * s.stride_width) * channels;
        if (++ow == out_width) {
          ow = 0;
          if (++oh == out_height) oh = 0, ++n;
        }
      }
      for (const Gemm& gemm : gemms_) {
        for (int64_t r = 0; r < rows; ++r) row_offsets[r] = pixels[r] + gemm.input_channel;
        run_tile(y + first * s.out_channels + gemm.first_channel, s.out_channels, gemm.weights,
                 {base, row_offsets.data(), tap_offsets_.data()}, rows, *gemm.fused, acc);
      }
    }
  }
}

void Conv2dLayer::run(uint8_t* y, const uint8_t* x, int64_t batch) const {
  if (gemms_[0].weights.element_size() == 2)
    run_rows<int16_t>(y, x, batch);
  else
    run_rows<uint8_t>(y, x, batch);
}

void Conv2dLayer::run(float* y, const uint8_t* x, int64_t batch) const {
  if (gemms_[0].weights.element_size() == 2)
    run_rows<int16_t>(y, x, batch);
  else
    run_rows<uint8_t>(y, x, batch);
}

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

namespace {

// add over one block; restrict pointers (y never overlaps a or b here) let it vectorize.
void add_block(uint8_t* __restrict y, const uint8_t* __restrict a, const uint8_t* __restrict b, int64_t n,
               const ActivationQuant pa, const ActivationQuant pb, const ActivationQuant py, bool has_relu) {
  const float inverse_scale = 1.0f / py.scale;
  for (int64_t i = 0; i < n; ++i) {
    float sum = dequantize_one(a[i], pa) + dequantize_one(b[i], pb);
    sum = has_relu && sum < 0.0f ? 0.0f : sum;
    y[i] = quantize_one(sum, inverse_scale, py);
  }
}

}  // namespace

void add(uint8_t* y, const uint8_t* a, const uint8_t* b, int64_t n, const ActivationQuant& pa,
         const ActivationQuant& pb, const ActivationQuant& py, bool has_relu) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t first = block * kBlock;
    add_block(y + first, a + first, b + first, std::min(kBlock, n - first), pa, pb, py, has_relu);
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
