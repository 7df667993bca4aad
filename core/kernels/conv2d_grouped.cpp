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
#include <utility>
#include <vector>

#include "core/kernels/conv2d.h"

namespace qforge::kernels {

namespace {

// Sixteen floats as one value (GCC's and clang's vector extension), compiled to the vectors
// -march gives: one zmm register with AVX-512, two ymm with AVX2. Its arithmetic is lane-wise
// IEEE, so a loop over it adds exactly what the scalar loop over the same 16 elements adds.
typedef float Floats16 __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

inline Floats16 load16(const float* p) {
  Floats16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store16(float* p, const Floats16& v) { std::memcpy(p, &v, sizeof v); }

// Taps a pass of the weight gradient keeps in registers, one 16-lane sum each: what the
// register file holds beside the gradient and the input vector.
#if defined(__AVX512F__)
constexpr int kTapsPerPass = 9;  // 32 zmm registers
#elif defined(__AVX2__)
constexpr int kTapsPerPass = 6;  // 16 ymm registers, two per sum
#else
constexpr int kTapsPerPass = 3;
#endif

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
  const int64_t taps = s.kernel_height * s.kernel_width, terms = in_per_group * taps;
  // Term k = (input channel, tap) of an output channel: its input offset and weight.
  std::vector<int64_t> offsets(static_cast<std::size_t>(terms));
  for (int64_t k = 0; k < terms; ++k)
    offsets[k] = k / taps * p.size + k % taps / s.kernel_width * p.width + k % s.kernel_width;
#pragma omp parallel
  {
    std::vector<float> accumulator(static_cast<std::size_t>(flat));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t o = 0; o < s.out_channels; ++o) {
        // Sixteen output positions at a time, every term added in a register: bias, then the
        // terms in (channel, kh, kw) order, as a scalar loop per position would add them.
        float* acc = accumulator.data();
        const float* planes = xp.get() + (n * s.in_channels + o / out_per_group * in_per_group) * p.size;
        const float* weights = w + o * terms;
        const float bias = b ? b[o] : 0.0f;
        int64_t j = 0;
        for (; j + kLanes <= flat; j += kLanes) {
          Floats16 sum = Floats16{} + bias;
          for (int64_t k = 0; k < terms; ++k) sum += weights[k] * load16(planes + offsets[k] + j);
          store16(acc + j, sum);
        }
        for (; j < flat; ++j) {
          float sum = bias;
          for (int64_t k = 0; k < terms; ++k) sum += weights[k] * planes[offsets[k] + j];
          acc[j] = sum;
        }
        float* out = y + (n * s.out_channels + o) * oh_count * ow_count;
        for (int64_t oh = 0; oh < oh_count; ++oh)
          std::memcpy(out + oh * ow_count, acc + oh * p.width, sizeof(float) * ow_count);
      }
  }
}

void conv2d_backward_data_grouped(float* dx, const float* dy, const float* w, const Conv2dShape& s) {
  // Gathered: padded-plane position q receives weight(o, tap)·g_o[q − offset(tap)] for every
  // output channel o of its group and every tap, in (o, kh, kw) order. Each gradient plane
  // sits at the padded width behind `front` zeros, so q − offset never leaves it, and a
  // position whose term falls outside the output adds w·0, which changes no sum: the same
  // sums, in the same order, as scattering each term into the plane.
  const Planes p = padded(s);
  const int64_t in_per_group = s.in_channels / s.groups, out_per_group = s.out_channels / s.groups;
  const int64_t oh_count = s.out_height(), ow_count = s.out_width();
  const int64_t taps = s.kernel_height * s.kernel_width, terms = out_per_group * taps;
  const int64_t front = (s.kernel_height - 1) * p.width + s.kernel_width - 1;
  // The rows holding the input (the padding rows are never read), rounded up to whole vectors.
  const int64_t first = s.padding_height * p.width, count = s.in_height * p.width;
  const int64_t rounded = (count + kLanes - 1) / kLanes * kLanes;
  const int64_t plane_size = front + first + rounded;
  std::unique_ptr<float[]> gradient(
      new float[static_cast<std::size_t>(s.batch * s.out_channels * plane_size)]);
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < s.batch * s.out_channels; ++plane) {
    float* out = gradient.get() + plane * plane_size;
    std::fill_n(out, plane_size, 0.0f);
    for (int64_t oh = 0; oh < oh_count; ++oh)
      std::memcpy(out + front + oh * p.width, dy + (plane * oh_count + oh) * ow_count,
                  sizeof(float) * ow_count);
  }
  // Term k = (output channel in the group, tap): where it reads, relative to q.
  std::vector<int64_t> offsets(static_cast<std::size_t>(terms));
  for (int64_t k = 0; k < terms; ++k)
    offsets[k] = k / taps * plane_size + front - (k % taps / s.kernel_width * p.width + k % s.kernel_width);
#pragma omp parallel
  {
    std::vector<float> rows(static_cast<std::size_t>(rounded)), weights(static_cast<std::size_t>(terms));
#pragma omp for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t c = 0; c < s.in_channels; ++c) {
        const int64_t group = c / in_per_group, ci = c % in_per_group;
        for (int64_t k = 0; k < terms; ++k)
          weights[k] = w[((group * out_per_group + k / taps) * in_per_group + ci) * taps + k % taps];
        const float* planes =
            gradient.get() + (n * s.out_channels + group * out_per_group) * plane_size + first;
        for (int64_t j = 0; j < rounded; j += kLanes) {
          Floats16 sum{};
          for (int64_t k = 0; k < terms; ++k) sum += weights[k] * load16(planes + offsets[k] + j);
          store16(rows.data() + j, sum);
        }
        float* plane = dx + (n * s.in_channels + c) * s.in_height * s.in_width;
        for (int64_t h = 0; h < s.in_height; ++h)
          std::memcpy(plane + h * s.in_width, rows.data() + h * p.width + s.padding_width,
                      sizeof(float) * s.in_width);
      }
  }
}

namespace {

// The weight gradient's inner loop for T taps at once: lanes[t][l] += Σ g[j]·in[t][j] over
// the plane's j ≡ l (mod 16), in j order — one read of the gradient serves T taps, and the T
// sums are independent chains the core overlaps. in[t] = plane + offset[t].
template <int T>
void tap_dots(std::array<double, kLanes>* lanes, const float* g, const float* plane, const int64_t* offset,
              int64_t flat) {
  Floats16 sum[T];
  const float* in[T];
  for (int t = 0; t < T; ++t) sum[t] = Floats16{}, in[t] = plane + offset[t];
  int64_t j = 0;
  for (; j + kLanes <= flat; j += kLanes) {
    const Floats16 gradient = load16(g + j);
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) sum[t] += gradient * load16(in[t] + j);
  }
  for (int t = 0; t < T; ++t) {
    float tail[kLanes];
    store16(tail, sum[t]);
    for (int64_t i = j, l = 0; i < flat; ++i, ++l) tail[l] += g[i] * in[t][i];
    for (int64_t l = 0; l < kLanes; ++l) lanes[t][l] += tail[l];
  }
}

using TapDots = void (*)(std::array<double, kLanes>*, const float*, const float*, const int64_t*, int64_t);

template <int... T>
constexpr std::array<TapDots, sizeof...(T)> tap_dots_table(std::integer_sequence<int, T...>) {
  return {&tap_dots<T + 1>...};
}

}  // namespace

void conv2d_backward_weights_grouped(float* dw, float* db, const float* dy, const float* x,
                                     const Conv2dShape& s) {
  const Planes p = padded(s);
  const std::unique_ptr<float[]> xp = pad_input(x, s, p);
  const std::unique_ptr<float[]> dyw = widen_gradient(dy, s, p);
  const int64_t in_per_group = s.in_channels / s.groups, out_per_group = s.out_channels / s.groups;
  const int64_t oh_count = s.out_height(), flat = oh_count * p.width;
  const int64_t taps = s.kernel_height * s.kernel_width;
  std::vector<int64_t> offsets(static_cast<std::size_t>(taps));
  for (int64_t tap = 0; tap < taps; ++tap)
    offsets[tap] = tap / s.kernel_width * p.width + tap % s.kernel_width;
  static constexpr auto kTapDots = tap_dots_table(std::make_integer_sequence<int, kTapsPerPass>{});
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
        for (int64_t first = 0; first < taps; first += kTapsPerPass) {
          const int64_t count = std::min<int64_t>(kTapsPerPass, taps - first);
          kTapDots[count - 1](lanes.data() + first, g, plane, offsets.data() + first, flat);
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
