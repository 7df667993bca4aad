// The reference integer kernels: one output element at a time, in the order the math is
// written (quant/int8/kernels.h). Nothing here is fast on purpose — the fast backend is
// held to these outputs byte for byte.
#include <algorithm>

#include "quant/int8/kernels.h"

namespace qforge::quant::int8 {

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
                         bool ceil_mode) {
  // PyTorch's pooling_output_shape: floor or ceil of the sweep, and with ceil_mode the last
  // window must start inside the input or its left padding.
  const int64_t span = in + 2 * padding - dilation * (kernel - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (span + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + padding) --out;
  return out;
}

namespace reference {

void quantize(uint8_t* q, const float* x, int64_t n, const ActivationQuant& p) {
  const float inverse_scale = 1.0f / p.scale;
  for (int64_t i = 0; i < n; ++i) q[i] = quantize_one(x[i], inverse_scale, p);
}

void dequantize(float* x, const uint8_t* q, int64_t n, const ActivationQuant& p) {
  for (int64_t i = 0; i < n; ++i) x[i] = dequantize_one(q[i], p);
}

void conv2d_accumulate(int32_t* acc, const uint8_t* x, const int8_t* w, const Conv2dShape& s,
                       int32_t x_zero_point) {
  const int64_t out_height = s.out_height(), out_width = s.out_width();
  const int64_t in_per_group = s.in_channels / s.groups, out_per_group = s.out_channels / s.groups;
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oh = 0; oh < out_height; ++oh)
      for (int64_t ow = 0; ow < out_width; ++ow)
        for (int64_t o = 0; o < s.out_channels; ++o) {
          const int64_t group = o / out_per_group;
          int32_t total = 0;
          for (int64_t c = 0; c < in_per_group; ++c)
            for (int64_t kh = 0; kh < s.kernel_height; ++kh)
              for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
                const int64_t ih = oh * s.stride_height - s.padding_height + kh * s.dilation_height;
                const int64_t iw = ow * s.stride_width - s.padding_width + kw * s.dilation_width;
                if (ih < 0 || ih >= s.in_height || iw < 0 || iw >= s.in_width) continue;  // (zx − zx)·w
                const int32_t xv =
                    x[((n * s.in_height + ih) * s.in_width + iw) * s.in_channels + group * in_per_group + c];
                const int32_t wv = w[((o * in_per_group + c) * s.kernel_height + kh) * s.kernel_width + kw];
                total += (xv - x_zero_point) * wv;
              }
          acc[((n * out_height + oh) * out_width + ow) * s.out_channels + o] = total;
        }
}

void linear_accumulate(int32_t* acc, const uint8_t* x, const int8_t* w, int64_t m, int64_t n, int64_t k,
                       int32_t x_zero_point) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      int32_t total = 0;
      for (int64_t p = 0; p < k; ++p)
        total += (static_cast<int32_t>(x[i * k + p]) - x_zero_point) * w[j * k + p];
      acc[i * n + j] = total;
    }
}

void requantize(uint8_t* y, const int32_t* acc, int64_t rows, int64_t channels, const OutputStage& stage) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < channels; ++j)
      y[r * channels + j] = requantize_one(acc[r * channels + j], stage.multiplier[j], stage.bias[j], stage);
}

void dequantize_accumulators(float* y, const int32_t* acc, int64_t rows, int64_t channels,
                             const OutputStage& stage) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < channels; ++j)
      y[r * channels + j] =
          dequantize_accumulator(acc[r * channels + j], stage.multiplier[j], stage.bias[j], stage.has_relu);
}

void conv2d(uint8_t* y, const uint8_t* x, const int8_t* w, const Conv2dShape& s, int32_t x_zero_point,
            const OutputStage& stage) {
  const int64_t rows = s.batch * s.out_height() * s.out_width();
  std::vector<int32_t> acc(rows * s.out_channels);
  conv2d_accumulate(acc.data(), x, w, s, x_zero_point);
  requantize(y, acc.data(), rows, s.out_channels, stage);
}

void linear(uint8_t* y, const uint8_t* x, const int8_t* w, int64_t m, int64_t n, int64_t k,
            int32_t x_zero_point, const OutputStage& stage) {
  std::vector<int32_t> acc(m * n);
  linear_accumulate(acc.data(), x, w, m, n, k, x_zero_point);
  requantize(y, acc.data(), m, n, stage);
}

void relu(uint8_t* y, const uint8_t* x, int64_t n, int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<uint8_t>(std::max<int32_t>(x[i], zero_point));
}

void add(uint8_t* y, const uint8_t* a, const uint8_t* b, int64_t n, const ActivationQuant& pa,
         const ActivationQuant& pb, const ActivationQuant& py, bool has_relu) {
  // da = (qa − za)·sa as one float product: PyTorch's scalar path, and exactly what the
  // fake-quant simulation computes (PyTorch's AVX2 blocks use an fma instead and can
  // differ by 1 on rare inputs; README_int8.md).
  const float inverse_scale = 1.0f / py.scale;
  for (int64_t i = 0; i < n; ++i) {
    float sum = dequantize_one(a[i], pa) + dequantize_one(b[i], pb);
    if (has_relu) sum = sum > 0.0f ? sum : 0.0f;
    y[i] = quantize_one(sum, inverse_scale, py);
  }
}

namespace {
// The rounding of an average whose integer sum (already minus zp·n for channels_last) is
// `acc` and whose multiplier is m.
uint8_t round_average(int32_t acc, float multiplier, int32_t zero_point, PoolRounding rounding) {
  float q = rounding == PoolRounding::channels_last
                ? round_half_even(static_cast<float>(acc) * multiplier) + static_cast<float>(zero_point)
                : round_half_even(static_cast<float>(acc) * multiplier + static_cast<float>(zero_point));
  return static_cast<uint8_t>(std::clamp(q, 0.0f, 255.0f));
}
}  // namespace

void max_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s) {
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oh = 0; oh < s.out_height; ++oh)
      for (int64_t ow = 0; ow < s.out_width; ++ow)
        for (int64_t c = 0; c < s.channels; ++c) {
          uint8_t best = 0;
          for (int64_t kh = 0; kh < s.kernel_height; ++kh)
            for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
              const int64_t ih = oh * s.stride_height - s.padding_height + kh * s.dilation_height;
              const int64_t iw = ow * s.stride_width - s.padding_width + kw * s.dilation_width;
              if (ih < 0 || ih >= s.in_height || iw < 0 || iw >= s.in_width) continue;
              best = std::max(best, x[((n * s.in_height + ih) * s.in_width + iw) * s.channels + c]);
            }
          y[((n * s.out_height + oh) * s.out_width + ow) * s.channels + c] = best;
        }
}

void avg_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s, const AvgPoolOptions& options,
                int32_t zero_point, PoolRounding rounding) {
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oh = 0; oh < s.out_height; ++oh)
      for (int64_t ow = 0; ow < s.out_width; ++ow)
        for (int64_t c = 0; c < s.channels; ++c) {
          // The window, clipped first to the padded input (count_include_pad's divisor),
          // then to the input itself (the taps that exist).
          int64_t h0 = oh * s.stride_height - s.padding_height, w0 = ow * s.stride_width - s.padding_width;
          int64_t h1 = std::min(h0 + s.kernel_height, s.in_height + s.padding_height);
          int64_t w1 = std::min(w0 + s.kernel_width, s.in_width + s.padding_width);
          const int64_t padded_count = (h1 - h0) * (w1 - w0);
          h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
          h1 = std::min(h1, s.in_height), w1 = std::min(w1, s.in_width);
          int32_t total = 0, taps = 0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw, ++taps)
              total += x[((n * s.in_height + ih) * s.in_width + iw) * s.channels + c];
          const int64_t divisor = options.divisor_override > 0 ? options.divisor_override
                                  : options.count_include_pad  ? padded_count
                                                               : taps;
          const float multiplier = 1.0f / static_cast<float>(divisor);
          const int32_t acc = total - zero_point * taps;
          y[((n * s.out_height + oh) * s.out_width + ow) * s.channels + c] =
              round_average(acc, multiplier, zero_point, rounding);
        }
}

void adaptive_avg_pool2d(uint8_t* y, const uint8_t* x, const PoolShape& s, int32_t zero_point,
                         PoolRounding rounding) {
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oh = 0; oh < s.out_height; ++oh)
      for (int64_t ow = 0; ow < s.out_width; ++ow)
        for (int64_t c = 0; c < s.channels; ++c) {
          const int64_t h0 = oh * s.in_height / s.out_height;
          const int64_t h1 = ((oh + 1) * s.in_height + s.out_height - 1) / s.out_height;
          const int64_t w0 = ow * s.in_width / s.out_width;
          const int64_t w1 = ((ow + 1) * s.in_width + s.out_width - 1) / s.out_width;
          int32_t total = 0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw)
              total += x[((n * s.in_height + ih) * s.in_width + iw) * s.channels + c];
          const int32_t taps = static_cast<int32_t>((h1 - h0) * (w1 - w0));
          uint8_t& out = y[((n * s.out_height + oh) * s.out_width + ow) * s.channels + c];
          if (rounding == PoolRounding::channels_last) {
            out = round_average(total - zero_point * taps, 1.0f / static_cast<float>(taps), zero_point,
                                rounding);
          } else {  // PyTorch's contiguous kernel: the raw sum times 1/kh/kw, no zero-point term
            const float multiplier = (1.0f / static_cast<float>(h1 - h0)) / static_cast<float>(w1 - w0);
            out = static_cast<uint8_t>(
                std::clamp(round_half_even(static_cast<float>(total) * multiplier), 0.0f, 255.0f));
          }
        }
}

}  // namespace reference

}  // namespace qforge::quant::int8
