// Derivative table (g = dL/dy):
//   max_pool2d            dx[argmax of each window] += g
//   avg_pool2d            dx[every window element] += g / divisor
//   adaptive_avg_pool2d   the same, with per-window divisors
// Forward and backward parallelize over the N·C planes, which never share outputs.
#include "core/ops/pool.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/profiler.h"
#include "core/threading.h"

namespace qforge {

namespace {

struct PoolGeometry {
  int64_t planes, height, width, out_height, out_width;
};

PoolGeometry geometry(const Shape& x, const Pool2dOptions& o, const char* op) {
  QF_CHECK(x.size() == 4, op, ": expected 4-D input (N,C,H,W), got ", x);
  QF_CHECK(o.kernel_height >= 1 && o.kernel_width >= 1 && o.stride_height >= 1 && o.stride_width >= 1, op,
           ": kernel and stride must be >= 1");
  QF_CHECK(o.padding_height >= 0 && 2 * o.padding_height <= o.kernel_height && o.padding_width >= 0 &&
               2 * o.padding_width <= o.kernel_width,
           op, ": padding must be at most half the kernel, got ", o.padding_height, "x", o.padding_width,
           " for kernel ", o.kernel_height, "x", o.kernel_width);
  PoolGeometry g{x[0] * x[1], x[2], x[3], 0, 0};
  // A window larger than the padded input leaves a negative span: no output (C++'s
  // division truncates toward zero, so dividing first would report one output).
  auto extent = [](int64_t in, int64_t padding, int64_t dilation, int64_t kernel, int64_t stride) -> int64_t {
    const int64_t span = in + 2 * padding - dilation * (kernel - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
  };
  g.out_height = extent(g.height, o.padding_height, o.dilation_height, o.kernel_height, o.stride_height);
  g.out_width = extent(g.width, o.padding_width, o.dilation_width, o.kernel_width, o.stride_width);
  QF_CHECK(g.out_height >= 1 && g.out_width >= 1, op, ": input ", x, " is smaller than the kernel ",
           o.kernel_height, "x", o.kernel_width);
  return g;
}

// Fast path for windows that tile the input (kernel = stride, no padding or dilation):
// no bounds checks. The winner is chosen with selects, not branches: on real
// activations it is unpredictable, and mispredictions cost more than the pooling.
//
// The 2×2 window in two vectorized passes, because the rows of these nets are short
// (14 or 7 outputs: one row is less than one AVX-512 vector, and a loop over it ran as
// scalar code — most of lenet's inference time went to pooling, Note [Op profile]):
// first the larger of each vertical pair, row by row, into `pairs` (OH rows of 2·OW),
// then the larger of each horizontal pair of that, one loop over the whole plane. The
// winner is PyTorch's: the first maximum in scan order (a, b, c, d) — in the second pass a
// tie goes to the smaller input index, which is the earlier in scan order. A NaN in the
// window wins, the last of several, as in PyTorch (the rare fix-up branch, taken only for
// a plane whose windows hold a NaN, found by the first pass).
//   pairs, pair_index: scratch of OH·2·OW
// kRelu: of relu(plane), each value loaded as the relu op computes it (relu_max_pool2d).
template <bool kRelu = false>
void max_pool_2x2(float* out, int32_t* arg, const float* plane, const PoolGeometry& g, float* pairs,
                  int32_t* pair_index) {
  const int64_t row = 2 * g.out_width;
  int32_t unordered = 0;
  auto load = [](float v) { return kRelu ? relu_value(v) : v; };
  for (int64_t oh = 0; oh < g.out_height; ++oh) {
    const int32_t top = static_cast<int32_t>(2 * oh * g.width), bottom = top + static_cast<int32_t>(g.width);
    const float* r0 = plane + top;
    const float* r1 = plane + bottom;
    float* v = pairs + oh * row;
    int32_t* vi = pair_index + oh * row;
    for (int64_t w = 0; w < row; ++w) {
      const float a = load(r0[w]), c = load(r1[w]);
      unordered |= static_cast<int32_t>(a != a) | static_cast<int32_t>(c != c);
      v[w] = c > a ? c : a;
      vi[w] = c > a ? bottom + static_cast<int32_t>(w) : top + static_cast<int32_t>(w);
    }
  }
  const int64_t outputs = g.out_height * g.out_width;
  for (int64_t o = 0; o < outputs; ++o) {
    const float left = pairs[2 * o], right = pairs[2 * o + 1];
    const int32_t left_index = pair_index[2 * o], right_index = pair_index[2 * o + 1];
    const bool take_right = (right > left) | ((right == left) & (right_index < left_index));
    out[o] = take_right ? right : left;
    arg[o] = take_right ? right_index : left_index;
  }
  if (kRelu || unordered == 0) return;  // relu leaves no NaN
  const int32_t width = static_cast<int32_t>(g.width);
  for (int64_t oh = 0; oh < g.out_height; ++oh)
    for (int64_t ow = 0; ow < g.out_width; ++ow) {
      const int32_t column = static_cast<int32_t>(2 * oh * g.width + 2 * ow);
      for (int32_t at : {column, column + 1, column + width, column + width + 1})
        if (std::isnan(plane[at])) out[oh * g.out_width + ow] = plane[at], arg[oh * g.out_width + ow] = at;
    }
}

// Every plane through max_pool_2x2, in parallel, each thread with its own scratch. argmax
// null: the winners are not kept (relu_max_pool2d, which records no backward).
template <bool kRelu>
void max_pool_2x2_planes(float* y, int32_t* argmax, const float* x, const PoolGeometry& g) {
  const int64_t per_plane = g.out_height * g.out_width;
#pragma omp parallel if (g.planes * g.height * g.width >= kParallelGrain)
  {
    std::vector<float> pairs(static_cast<std::size_t>(2 * per_plane));
    std::vector<int32_t> pair_index(pairs.size()), winners(argmax ? 0 : static_cast<std::size_t>(per_plane));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < g.planes; ++p)
      max_pool_2x2<kRelu>(y + p * per_plane, argmax ? argmax + p * per_plane : winners.data(),
                          x + p * g.height * g.width, g, pairs.data(), pair_index.data());
  }
}

void max_pool_tiled(float* y, int32_t* argmax, const float* x, const PoolGeometry& g,
                    const Pool2dOptions& o) {
  const int64_t kh_count = o.kernel_height, kw_count = o.kernel_width;
  if (kh_count == 2 && kw_count == 2) return max_pool_2x2_planes<false>(y, argmax, x, g);
#pragma omp parallel for schedule(static) if (g.planes * g.height * g.width >= kParallelGrain)
  for (int64_t p = 0; p < g.planes; ++p) {
    const float* plane = x + p * g.height * g.width;
    float* out = y + p * g.out_height * g.out_width;
    int32_t* arg = argmax + p * g.out_height * g.out_width;
    for (int64_t oh = 0; oh < g.out_height; ++oh)
      for (int64_t ow = 0; ow < g.out_width; ++ow) {
        int32_t best_index = static_cast<int32_t>(oh * kh_count * g.width + ow * kw_count);
        float best = plane[best_index];
        for (int64_t kh = 0; kh < kh_count; ++kh) {
          const int32_t row = static_cast<int32_t>((oh * kh_count + kh) * g.width + ow * kw_count);
          for (int64_t kw = 0; kw < kw_count; ++kw) {
            const float v = plane[row + kw];
            const bool take = (v > best) | (v != v);  // v != v: NaN propagates, as in PyTorch
            best = take ? v : best;
            best_index = take ? row + static_cast<int32_t>(kw) : best_index;
          }
        }
        out[oh * g.out_width + ow] = best;
        arg[oh * g.out_width + ow] = best_index;
      }
  }
}

//   y (planes, OH, OW), argmax (planes, OH, OW) flat index within the plane
void max_pool_forward(float* y, int32_t* argmax, const float* x, const PoolGeometry& g,
                      const Pool2dOptions& o) {
  if (o.kernel_height == o.stride_height && o.kernel_width == o.stride_width && o.padding_height == 0 &&
      o.padding_width == 0 && o.dilation_height == 1 && o.dilation_width == 1)
    return max_pool_tiled(y, argmax, x, g, o);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < g.planes; ++p) {
    const float* plane = x + p * g.height * g.width;
    for (int64_t oh = 0; oh < g.out_height; ++oh)
      for (int64_t ow = 0; ow < g.out_width; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        int32_t best_index = -1;
        for (int64_t kh = 0; kh < o.kernel_height; ++kh) {
          int64_t ih = oh * o.stride_height - o.padding_height + kh * o.dilation_height;
          if (ih < 0 || ih >= g.height) continue;
          for (int64_t kw = 0; kw < o.kernel_width; ++kw) {
            int64_t iw = ow * o.stride_width - o.padding_width + kw * o.dilation_width;
            if (iw < 0 || iw >= g.width) continue;
            float v = plane[ih * g.width + iw];
            if (v > best || best_index < 0 || std::isnan(v)) {  // NaN propagates, as in PyTorch
              best = v;
              best_index = static_cast<int32_t>(ih * g.width + iw);
            }
          }
        }
        int64_t at = (p * g.out_height + oh) * g.out_width + ow;
        y[at] = best;
        argmax[at] = best_index;
      }
  }
}

// Visits every (output, input) pair of an average window with its divisor.
template <typename Visit>
void for_each_avg_window(const PoolGeometry& g, const Pool2dOptions& o, bool count_include_pad, Visit visit) {
  for (int64_t oh = 0; oh < g.out_height; ++oh)
    for (int64_t ow = 0; ow < g.out_width; ++ow) {
      int64_t h0 = oh * o.stride_height - o.padding_height, w0 = ow * o.stride_width - o.padding_width;
      int64_t h1 = std::min(h0 + o.kernel_height, g.height + o.padding_height);
      int64_t w1 = std::min(w0 + o.kernel_width, g.width + o.padding_width);
      int64_t padded_count = (h1 - h0) * (w1 - w0);
      h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
      h1 = std::min(h1, g.height), w1 = std::min(w1, g.width);
      float divisor = static_cast<float>(count_include_pad ? padded_count : (h1 - h0) * (w1 - w0));
      visit(oh * g.out_width + ow, h0, h1, w0, w1, divisor);
    }
}

// Adaptive windows: start = floor(i·H/OH), end = ceil((i+1)·H/OH).
template <typename Visit>
void for_each_adaptive_window(const PoolGeometry& g, Visit visit) {
  for (int64_t oh = 0; oh < g.out_height; ++oh) {
    int64_t h0 = oh * g.height / g.out_height, h1 = ((oh + 1) * g.height + g.out_height - 1) / g.out_height;
    for (int64_t ow = 0; ow < g.out_width; ++ow) {
      int64_t w0 = ow * g.width / g.out_width, w1 = ((ow + 1) * g.width + g.out_width - 1) / g.out_width;
      visit(oh * g.out_width + ow, h0, h1, w0, w1, static_cast<float>((h1 - h0) * (w1 - w0)));
    }
  }
}

// Average pooling forward/backward over any window enumeration.
template <typename Windows>
Tensor average_pool(const Tensor& x, const PoolGeometry& g, const char* name, Windows windows) {
  const ProfileScope profile("forward", name, [&] { return shape_to_string(x.shape()); });
  Tensor y = Tensor::empty({x.size(0), x.size(1), g.out_height, g.out_width});
  const float* px = x.data();
  float* py = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < g.planes; ++p) {
    const float* plane = px + p * g.height * g.width;
    float* out = py + p * g.out_height * g.out_width;
    windows([&](int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1, float divisor) {
      float total = 0;
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) total += plane[h * g.width + w];
      out[o] = total / divisor;
    });
  }
  const Shape& input_shape = x.shape();
  return record(y, name, {x}, [input_shape, g, windows](const Tensor& grad, const Node&) {
    Tensor dx = Tensor::zeros(input_shape);
    const float* pg = grad.data();
    float* pdx = dx.data();
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < g.planes; ++p) {
      float* plane = pdx + p * g.height * g.width;
      const float* gp = pg + p * g.out_height * g.out_width;
      windows([&](int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1, float divisor) {
        float share = gp[o] / divisor;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) plane[h * g.width + w] += share;
      });
    }
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& options) {
  PoolGeometry g = geometry(x.shape(), options, "max_pool2d");
  const ProfileScope profile("forward", "max_pool2d", [&] { return shape_to_string(x.shape()); });
  Tensor y = Tensor::empty({x.size(0), x.size(1), g.out_height, g.out_width});
  Tensor argmax = Tensor::empty(y.shape(), DType::s32);  // every element written
  max_pool_forward(y.data(), argmax.data_as<int32_t>(), x.data(), g, options);
  if (!any_requires_grad({&x})) return y;
  const Shape& input_shape = x.shape();
  return record(y, "max_pool2d", {x}, [input_shape, g, argmax](const Tensor& grad, const Node&) {
    // Each plane is zeroed by the thread that scatters into it, while it is in that thread's
    // cache: a serial memset of the whole gradient first cost more than the scatter.
    Tensor dx = Tensor::empty(input_shape);
    const float* pg = grad.data();
    float* pdx = dx.data();
    const int64_t per_plane = g.out_height * g.out_width, plane_size = g.height * g.width;
    const int32_t* arg = argmax.data_as<int32_t>();
#pragma omp parallel for schedule(static) if (g.planes * plane_size >= kParallelGrain)
    for (int64_t p = 0; p < g.planes; ++p) {
      float* plane = pdx + p * plane_size;
      std::fill_n(plane, plane_size, 0.0f);
      for (int64_t i = 0; i < per_plane; ++i) {
        const int64_t at = p * per_plane + i;
        if (arg[at] >= 0) plane[arg[at]] += pg[at];
      }
    }
    return std::vector<Tensor>{dx};
  });
}

Tensor relu_max_pool2d(const Tensor& x, const Pool2dOptions& o) {
  const bool fused = !any_requires_grad({&x}) && x.dim() == 4 && o.kernel_height == 2 &&
                     o.kernel_width == 2 && o.stride_height == 2 && o.stride_width == 2 &&
                     o.padding_height == 0 && o.padding_width == 0 && o.dilation_height == 1 &&
                     o.dilation_width == 1;
  if (!fused) return max_pool2d(relu(x), o);
  PoolGeometry g = geometry(x.shape(), o, "max_pool2d");
  const ProfileScope profile("forward", "relu_max_pool2d", [&] { return shape_to_string(x.shape()); });
  Tensor y = Tensor::empty({x.size(0), x.size(1), g.out_height, g.out_width});
  max_pool_2x2_planes<true>(y.data(), nullptr, x.data(), g);
  return y;
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& options, bool count_include_pad) {
  QF_CHECK(options.dilation_height == 1 && options.dilation_width == 1,
           "avg_pool2d: dilation is not supported");
  PoolGeometry g = geometry(x.shape(), options, "avg_pool2d");
  return average_pool(x, g, "avg_pool2d", [g, options, count_include_pad](auto&& visit) {
    for_each_avg_window(g, options, count_include_pad, visit);
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_height, int64_t out_width) {
  QF_CHECK(x.dim() == 4, "adaptive_avg_pool2d: expected 4-D input (N,C,H,W), got ", x.shape());
  QF_CHECK(out_height >= 1 && out_width >= 1, "adaptive_avg_pool2d: output size must be >= 1, got ",
           out_height, "x", out_width);
  PoolGeometry g{x.size(0) * x.size(1), x.size(2), x.size(3), out_height, out_width};
  return average_pool(x, g, "adaptive_avg_pool2d", [g](auto&& visit) { for_each_adaptive_window(g, visit); });
}

namespace {

bool tiles(const Pool2dOptions& o) {
  return o.kernel_height == o.stride_height && o.kernel_width == o.stride_width && o.padding_height == 0 &&
         o.padding_width == 0 && o.dilation_height == 1 && o.dilation_width == 1;
}

// Windows that tile the input, B channels per step as one vector (GCC/clang vector types:
// the compiler emits this machine's instructions, which auto-vectorization did not for the
// select below). The scan order and rule of the general loop below, lane by lane.
using Floats16 = float __attribute__((vector_size(64)));
using Mask16 = int32_t __attribute__((vector_size(64)));
using Floats8 = float __attribute__((vector_size(32)));
using Mask8 = int32_t __attribute__((vector_size(32)));

template <typename Floats, typename Mask>
void max_pool_blocked_tiled(float* out, const float* in, int64_t planes, const PoolGeometry& g,
                            const Pool2dOptions& o) {
  constexpr int64_t B = sizeof(Floats) / sizeof(float);
#pragma omp parallel for schedule(static) if (planes * g.height * g.width * B >= kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = in + p * g.height * g.width * B;
    for (int64_t oh = 0; oh < g.out_height; ++oh)
      for (int64_t ow = 0; ow < g.out_width; ++ow) {
        const float* corner = plane + (oh * o.stride_height * g.width + ow * o.stride_width) * B;
        Floats best;
        std::memcpy(&best, corner, sizeof best);
        for (int64_t kh = 0; kh < o.kernel_height; ++kh)
          for (int64_t kw = kh == 0 ? 1 : 0; kw < o.kernel_width; ++kw) {
            Floats v;
            std::memcpy(&v, corner + (kh * g.width + kw) * B, sizeof v);
            const Mask take = (v > best) | (v != v);  // v != v: a NaN
            best =
                std::bit_cast<Floats>((std::bit_cast<Mask>(v) & take) | (std::bit_cast<Mask>(best) & ~take));
          }
        std::memcpy(out + ((p * g.out_height + oh) * g.out_width + ow) * B, &best, sizeof best);
      }
  }
}

}  // namespace

Tensor max_pool2d_blocked(const Tensor& x, const Pool2dOptions& o) {
  QF_CHECK(x.dim() == 5, "max_pool2d (blocked): expected (N,C/B,H,W,B), got ", x.shape());
  QF_CHECK(!any_requires_grad({&x}), "max_pool2d (blocked): inference only (no gradient)");
  const int64_t block = x.size(4);
  const PoolGeometry g = geometry({x.size(0), x.size(1) * block, x.size(2), x.size(3)}, o, "max_pool2d");
  const ProfileScope profile("forward", "max_pool2d_blocked", [&] { return shape_to_string(x.shape()); });
  Tensor y = Tensor::empty({x.size(0), x.size(1), g.out_height, g.out_width, block});
  const float* in = x.data();
  float* out = y.data();
  const int64_t planes = x.size(0) * x.size(1);
  if (block == 16 && tiles(o)) {
    max_pool_blocked_tiled<Floats16, Mask16>(out, in, planes, g, o);
    return y;
  }
  if (block == 8 && tiles(o)) {
    max_pool_blocked_tiled<Floats8, Mask8>(out, in, planes, g, o);
    return y;
  }
  // Each window is max_pool_forward's, over B channels at once: the same scan order, the
  // same rule (the first maximum; a NaN wins, the last of several), so the same values.
#pragma omp parallel for schedule(static) if (planes * g.height * g.width * block >= kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = in + p * g.height * g.width * block;
    for (int64_t oh = 0; oh < g.out_height; ++oh)
      for (int64_t ow = 0; ow < g.out_width; ++ow) {
        float* best = out + ((p * g.out_height + oh) * g.out_width + ow) * block;
        bool first = true;
        for (int64_t kh = 0; kh < o.kernel_height; ++kh) {
          const int64_t ih = oh * o.stride_height - o.padding_height + kh * o.dilation_height;
          if (ih < 0 || ih >= g.height) continue;
          for (int64_t kw = 0; kw < o.kernel_width; ++kw) {
            const int64_t iw = ow * o.stride_width - o.padding_width + kw * o.dilation_width;
            if (iw < 0 || iw >= g.width) continue;
            const float* v = plane + (ih * g.width + iw) * block;
            if (first) {
              std::copy_n(v, block, best);
              first = false;
              continue;
            }
            for (int64_t k = 0; k < block; ++k) best[k] = v[k] > best[k] || std::isnan(v[k]) ? v[k] : best[k];
          }
        }
      }
  }
  return y;
}

Tensor adaptive_avg_pool2d_blocked(const Tensor& x, int64_t out_height, int64_t out_width) {
  QF_CHECK(x.dim() == 5, "adaptive_avg_pool2d (blocked): expected (N,C/B,H,W,B), got ", x.shape());
  QF_CHECK(out_height >= 1 && out_width >= 1, "adaptive_avg_pool2d: output size must be >= 1, got ",
           out_height, "x", out_width);
  QF_CHECK(!any_requires_grad({&x}), "adaptive_avg_pool2d (blocked): inference only (no gradient)");
  const int64_t block = x.size(4), groups = x.size(1), channels = groups * block;
  const PoolGeometry g{x.size(0) * groups, x.size(2), x.size(3), out_height, out_width};
  const ProfileScope profile("forward", "adaptive_avg_pool2d_blocked",
                             [&] { return shape_to_string(x.shape()); });
  Tensor y = Tensor::empty({x.size(0), channels, out_height, out_width});
  const float* in = x.data();
  float* out = y.data();
  // average_pool's sums, each channel's in the same order (rows, then columns), B at a time.
#pragma omp parallel for schedule(static) if (g.planes * g.height * g.width * block >= kParallelGrain)
  for (int64_t p = 0; p < g.planes; ++p) {
    const float* plane = in + p * g.height * g.width * block;
    float* first_channel = out + p * block * out_height * out_width;  // planes are (n, group): C = groups·B
    std::vector<float> total(static_cast<std::size_t>(block));
    for_each_adaptive_window(g,
                             [&](int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1, float divisor) {
                               std::fill(total.begin(), total.end(), 0.0f);
                               for (int64_t h = h0; h < h1; ++h)
                                 for (int64_t w = w0; w < w1; ++w)
                                   for (int64_t k = 0; k < block; ++k)
                                     total[k] += plane[(h * g.width + w) * block + k];
                               for (int64_t k = 0; k < block; ++k)
                                 first_channel[k * out_height * out_width + o] = total[k] / divisor;
                             });
  }
  return y;
}

}  // namespace qforge
