// Direct convolution for groups of few channels (jermmy's 40 channels in 20 groups of 2),
// where oneDNN ran at 2% of the sgemm peak: each group is a handful of 3x3 stencils, too
// small for any GEMM (Note [Op profile]). Stride 1, no dilation (conv2d_grouped_applies).
// The weight gradient also serves layers of few input channels without groups (the first
// layer, 1 input channel: oneDNN at 3-7% of peak; conv2d_grouped_weights_applies).
//
// The trick that vectorizes it: with the input padded to a plane of width Wp, output
// (oh, ow) computed at flat position j = oh·Wp + ow reads the input at j + kh·Wp + kw,
// linear in j. So each (channel, kh, kw) term is one loop over the whole plane, j in
// [0, OH·Wp), with the Wp − OW columns past each row's end computed and dropped
// (forward), or kept at zero so they add nothing (backward). The rows of these nets
// (11 to 28 wide) are shorter than a vector; the plane (143 to 784) is not.
#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <vector>

#include "core/kernels/conv2d.h"

namespace qforge::kernels {

namespace {

struct Planes {
  int64_t height, width;  // padded input plane
  int64_t size;           // height·width + kernel_width of slack: the last row's dropped columns read past
};

Planes padded(const Conv2dShape& s) {
  const int64_t height = s.in_height + 2 * s.padding_height, width = s.in_width + 2 * s.padding_width;
  return {height, width, height * width + s.kernel_width};
}

// xp (N·C, size): each input plane inside a zero border, slack zeroed.
std::unique_ptr<float[]> pad_input(const float* x, const Conv2dShape& s, const Planes& p) {
  std::unique_ptr<float[]> xp(new float[static_cast<std::size_t>(s.batch * s.in_channels * p.size)]);
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < s.batch * s.in_channels; ++plane) {
    float* out = xp.get() + plane * p.size;
    std::fill_n(out, s.padding_height * p.width, 0.0f);
    for (int64_t h = 0; h < s.in_height; ++h) {
      float* row = out + (h + s.padding_height) * p.width;
      std::fill_n(row, s.padding_width, 0.0f);
      std::memcpy(row + s.padding_width, x + (plane * s.in_height + h) * s.in_width,
                  sizeof(float) * s.in_width);
      std::fill_n(row + s.padding_width + s.in_width, s.padding_width, 0.0f);
    }
    const int64_t written = (s.padding_height + s.in_height) * p.width;
    std::fill_n(out + written, p.size - written, 0.0f);
  }
  return xp;
}

// dyw (N·O, OH·Wp): each gradient row at the padded width, the columns past OW zero.
std::unique_ptr<float[]> widen_gradient(const float* dy, const Conv2dShape& s, const Planes& p) {
  const int64_t oh_count = s.out_height(), ow_count = s.out_width();
  std::unique_ptr<float[]> dyw(
      new float[static_cast<std::size_t>(s.batch * s.out_channels * oh_count * p.width)]);
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < s.batch * s.out_channels; ++plane)
    for (int64_t oh = 0; oh < oh_count; ++oh) {
      float* row = dyw.get() + (plane * oh_count + oh) * p.width;
      std::memcpy(row, dy + (plane * oh_count + oh) * ow_count, sizeof(float) * ow_count);
      std::fill_n(row + ow_count, p.width - ow_count, 0.0f);
    }
  return dyw;
}

}  // namespace

bool conv2d_grouped_applies(const Conv2dShape& s) {
  return s.groups > 1 && s.in_channels / s.groups <= 4 && s.out_channels / s.groups <= 4 &&
         conv2d_grouped_weights_applies(s);
}

bool conv2d_grouped_weights_applies(const Conv2dShape& s) {
  return s.in_channels / s.groups <= 4 && s.stride_height == 1 && s.stride_width == 1 &&
         s.dilation_height == 1 && s.dilation_width == 1 && s.out_height() >= 1 && s.out_width() >= 1;
}

void conv2d_forward_grouped(float* y, const float* x, const float* w, const float* b, const Conv2dShape& s) {
  const Planes p = padded(s);
  const std::unique_ptr<float[]> xp = pad_input(x, s, p);
  const int64_t in_per_group = s.in_channels / s.groups, out_per_group = s.out_channels / s.groups;
  const int64_t oh_count = s.out_height(), ow_count = s.out_width(), flat = oh_count * p.width;
  const int64_t taps = s.kernel_height * s.kernel_width;
#pragma omp parallel
  {
    std::vector<float> accumulator(static_cast<std::size_t>(flat));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t o = 0; o < s.out_channels; ++o) {
        float* acc = accumulator.data();
        std::fill_n(acc, flat, b ? b[o] : 0.0f);
        const int64_t first_channel = o / out_per_group * in_per_group;
        for (int64_t ci = 0; ci < in_per_group; ++ci) {
          const float* plane = xp.get() + (n * s.in_channels + first_channel + ci) * p.size;
          const float* weights = w + (o * in_per_group + ci) * taps;
          for (int64_t kh = 0; kh < s.kernel_height; ++kh)
            for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
              const float weight = weights[kh * s.kernel_width + kw];
              const float* in = plane + kh * p.width + kw;
              for (int64_t j = 0; j < flat; ++j) acc[j] += weight * in[j];
            }
        }
        float* out = y + (n * s.out_channels + o) * oh_count * ow_count;
        for (int64_t oh = 0; oh < oh_count; ++oh)
          std::memcpy(out + oh * ow_count, acc + oh * p.width, sizeof(float) * ow_count);
      }
  }
}

void conv2d_backward_data_grouped(float* dx, const float* dy, const float* w, const Conv2dShape& s) {
  const Planes p = padded(s);
  const std::unique_ptr<float[]> dyw = widen_gradient(dy, s, p);
  const int64_t in_per_group = s.in_channels / s.groups, out_per_group = s.out_channels / s.groups;
  const int64_t oh_count = s.out_height(), flat = oh_count * p.width;
  const int64_t taps = s.kernel_height * s.kernel_width;
#pragma omp parallel
  {
    std::vector<float> padded_dx(static_cast<std::size_t>(p.size));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t c = 0; c < s.in_channels; ++c) {
        float* acc = padded_dx.data();
        std::fill_n(acc, p.size, 0.0f);
        const int64_t group = c / in_per_group, ci = c % in_per_group;
        for (int64_t oi = 0; oi < out_per_group; ++oi) {
          const int64_t o = group * out_per_group + oi;
          const float* g = dyw.get() + (n * s.out_channels + o) * flat;
          const float* weights = w + (o * in_per_group + ci) * taps;
          for (int64_t kh = 0; kh < s.kernel_height; ++kh)
            for (int64_t kw = 0; kw < s.kernel_width; ++kw) {
              const float weight = weights[kh * s.kernel_width + kw];
              float* out = acc + kh * p.width + kw;
              for (int64_t j = 0; j < flat; ++j) out[j] += weight * g[j];
            }
        }
        float* plane = dx + (n * s.in_channels + c) * s.in_height * s.in_width;
        for (int64_t h = 0; h < s.in_height; ++h)
          std::memcpy(plane + h * s.in_width, acc + (h + s.padding_height) * p.width + s.padding_width,
                      sizeof(float) * s.in_width);
      }
  }
}

void conv2d_backward_weights_grouped(float* dw, float* db, const float* dy, const float* x,
                                     const Conv2dShape& s) {
  const Planes p = padded(s);
  const std::unique_ptr<float[]> xp = pad_input(x, s, p);
  const std::unique_ptr<float[]> dyw = widen_gradient(dy, s, p);
  const int64_t in_per_group = s.in_channels / s.groups, out_per_group = s.out_channels / s.groups;
  const int64_t oh_count = s.out_height(), flat = oh_count * p.width;
  const int64_t taps = s.kernel_height * s.kernel_width;
  constexpr int64_t kLanes = 16;  // independent partial sums, so the dot products vectorize
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < s.out_channels; ++o) {
    const int64_t first_channel = o / out_per_group * in_per_group;
    // Image by image, every tap of one (gradient, input) plane pair while both sit in L1. Each
    // image's products are summed in float lanes and the image's lanes added into double ones:
    // a float sum over the whole batch would carry its rounding error into training, and make
    // it depend on how a batch is split (over ranks, say) far beyond the last bit.
    std::vector<std::array<double, kLanes>> lanes(static_cast<std::size_t>(taps));
    for (int64_t ci = 0; ci < in_per_group; ++ci) {
      std::fill(lanes.begin(), lanes.end(), std::array<double, kLanes>{});
      for (int64_t n = 0; n < s.batch; ++n) {
        const float* g = dyw.get() + (n * s.out_channels + o) * flat;
        const float* plane = xp.get() + (n * s.in_channels + first_channel + ci) * p.size;
        for (int64_t tap = 0; tap < taps; ++tap) {
          const float* in = plane + tap / s.kernel_width * p.width + tap % s.kernel_width;
          std::array<float, kLanes> acc{};
          int64_t j = 0;
          for (; j + kLanes <= flat; j += kLanes)
            for (int64_t l = 0; l < kLanes; ++l) acc[l] += g[j + l] * in[j + l];
          for (int64_t l = 0; j < flat; ++j, ++l) acc[l] += g[j] * in[j];
          for (int64_t l = 0; l < kLanes; ++l) lanes[tap][l] += acc[l];
        }
      }
      for (int64_t tap = 0; tap < taps; ++tap) {
        double total = 0;
        for (const double lane : lanes[tap]) total += lane;
        dw[(o * in_per_group + ci) * taps + tap] = static_cast<float>(total);
      }
    }
    if (db != nullptr) {
      double total = 0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const float* g = dyw.get() + (n * s.out_channels + o) * flat;
        float image = 0;
        for (int64_t j = 0; j < flat; ++j) image += g[j];
        total += image;
      }
      db[o] = static_cast<float>(total);
    }
  }
}

}  // namespace qforge::kernels
