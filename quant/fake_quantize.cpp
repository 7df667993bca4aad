// Derivative table (g = dL/dy, u = nearbyint(x·(1/s)) + z the unclamped level):
//   fake_quantize             dx = g·[qmin <= u <= qmax]
//   fake_quantize_learnable   dx = g·[qmin <= u <= qmax]
//                             ds = Σ g·((x̂ − x)/s)        inside the range
//                                  Σ g·(qmin − z or qmax − z)  below / above it
//                             dz = Σ g·(−s)               outside the range, 0 inside
//                             (both times grad_factor; PyTorch's
//                             _fake_quantize_learnable_tensor_grad_kernel_cpu)
//   fake_quantize_amax        dx = g·[|x| <= amax]
//   fake_quantize_binary      dx = g·[|x| <= α_c],  dα_c = grad_factor·Σ g·sign(x)  (Note [Binary weights])
// Tensors are walked as (outer, channel, inner) so per-channel parameters are hoisted
// out of the inner loop and cost nothing extra (pytorch/pytorch #33647).
#include "quant/fake_quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/threading.h"

namespace qforge::quant {

namespace {

AxisSplit channel_split(const Tensor& x, int64_t axis, const char* op) {
  if (axis < 0) return {1, 1, x.numel()};
  QF_CHECK(axis < x.dim(), op, ": axis ", axis, " out of range for input ", x.shape());
  return split_at_axis(x.shape(), axis);
}

// Note [ReLU in the quantizer]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A conv or linear layer with a ReLU quantizes relu(y). Run as two ops, the ReLU reads and
// writes the whole activation forward and backward, and was ~7% of a QAT step. Fused
// (relu = true), the quantizer reads max(y, 0) as it loads y — the relu op's own formula,
// relu_value (core/ops/elementwise.h) — and its gradient is the product of the two ops'
// gradients, g where the level of relu(y) is in range and y > 0, else 0. Every value is the
// one the two ops give, bit for bit (tested against relu then fake_quantize, forward and
// backward): only the passes over memory go.

// One contiguous run of elements sharing (scale, zero point), through the mapping of
// quant_params.h (inlined, and vectorized by the compiler). kMask: write the in-range flags
// (the straight-through gradient's); kRelu: quantize relu(x), and flag only x > 0.
template <bool kMask, bool kRelu>
void fake_quantize_run(float* y, uint8_t* mask, const float* x, int64_t count, float scale, float zero_point,
                       float lo, float hi) {
  const float inverse = 1.0f / scale;
  for (int64_t i = 0; i < count; ++i) {
    const float v = kRelu ? relu_value(x[i]) : x[i];
    const float u = quantize_unclamped(v, inverse, zero_point);
    y[i] = dequantize_level(clamp_level(u, lo, hi), scale, zero_point);
    if constexpr (kMask) mask[i] = (u >= lo) & (u <= hi) & (!kRelu || x[i] > 0.0f);
  }
}

// y = fake-quantized x (of relu(x) when kRelu) and, when mask is not null, the in-range
// flags (no offset is ever added to a null mask: that is undefined, and UBSan says so). Per tensor, the flat
// array is split across threads; per channel, the (outer, channel) runs are.
template <bool kMask, bool kRelu>
void fake_quantize_split(float* y, uint8_t* mask, const float* x, const float* scale,
                         const int64_t* zero_point, const QuantRange& range, const AxisSplit& s) {
  const float lo = static_cast<float>(range.quant_min), hi = static_cast<float>(range.quant_max);
  const int64_t total = s.outer * s.extent * s.inner;
  if (s.outer * s.extent == 1) {
    const int64_t block = 1 << 14;
#pragma omp parallel for schedule(static) if (total >= kParallelGrain)
    for (int64_t start = 0; start < total; start += block)
      fake_quantize_run<kMask, kRelu>(y + start, kMask ? mask + start : nullptr, x + start,
                                      std::min(block, total - start), scale[0],
                                      static_cast<float>(zero_point[0]), lo, hi);
    return;
  }
#pragma omp parallel for collapse(2) schedule(static) if (total >= kParallelGrain)
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t c = 0; c < s.extent; ++c) {
      const int64_t base = (o * s.extent + c) * s.inner;
      fake_quantize_run<kMask, kRelu>(y + base, kMask ? mask + base : nullptr, x + base, s.inner, scale[c],
                                      static_cast<float>(zero_point[c]), lo, hi);
    }
}

void fake_quantize_kernel(float* y, uint8_t* mask, const float* x, const float* scale,
                          const int64_t* zero_point, const QuantRange& range, const AxisSplit& s, bool relu) {
  if (mask != nullptr)
    return relu ? fake_quantize_split<true, true>(y, mask, x, scale, zero_point, range, s)
                : fake_quantize_split<true, false>(y, mask, x, scale, zero_point, range, s);
  return relu ? fake_quantize_split<false, true>(y, mask, x, scale, zero_point, range, s)
              : fake_quantize_split<false, false>(y, mask, x, scale, zero_point, range, s);
}

// The in-range flags, one byte per element, left uninitialized: the kernel writes each.
using Mask = std::shared_ptr<uint8_t[]>;
Mask new_mask(int64_t n) { return Mask(new uint8_t[static_cast<std::size_t>(std::max<int64_t>(n, 1))]); }

// The straight-through estimator (Bengio et al. 2013; PyTorch's fake-quant backward):
// round() has zero gradient almost everywhere, so backward treats fake quantization as
// the identity where the value was inside the integer range and as a constant (gradient
// 0) where it was clamped. `mask` holds the in-range flags the forward recorded.
Tensor straight_through_gradient(const Tensor& g, const uint8_t* mask) {
  Tensor dx = Tensor::empty(g.shape());
  const float* pg = g.data();
  float* out = dx.data();
  const int64_t n = g.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; ++i) out[i] = mask[i] ? pg[i] : 0.0f;
  return dx;
}

// fake_quantize_learnable's backward over one contiguous run of n elements sharing
// (scale, zero point): writes dx = g where the level is in range, 0 elsewhere, and returns
// the run's contributions to d_scale and d_zero (the table at the top, before grad_factor).
// zero is the backward's zero point (rounded half up), as a float. Two passes per tile of
// kTile elements, each a loop the compiler vectorizes: the elementwise terms (selects, no
// branches), then their sums in 16 float lanes (element i adds to lane i mod 16); the lanes
// are added in double at the end.
struct LearnableSums {
  double scale = 0, zero = 0;
};

// kRelu: of relu(x) (Note [ReLU in the quantizer]): the terms of max(x, 0), and dx also 0
// where x <= 0.
template <bool kRelu>
void learnable_backward_terms(float* dx, float* scale_terms, float* zero_terms, const float* g,
                              const float* x, int64_t n, float scale, float zero, float lo, float hi) {
  const float inverse = 1.0f / scale;
  for (int64_t i = 0; i < n; ++i) {
    const float v = kRelu ? relu_value(x[i]) : x[i];
    const float level = std::nearbyint(zero + v * inverse);  // PyTorch's order: z added before rounding
    const bool inside = (level >= lo) & (level <= hi);
    dx[i] = (inside & (!kRelu || x[i] > 0.0f)) ? g[i] : 0.0f;
    const float outside_term = g[i] * ((level < lo ? lo : hi) - zero);
    const float inside_term = g[i] * (dequantize_level(level, scale, zero) - v) * inverse;
    scale_terms[i] = inside ? inside_term : outside_term;
    zero_terms[i] = inside ? 0.0f : -g[i] * scale;
  }
}

template <bool kRelu>
LearnableSums learnable_backward_run(float* dx, const float* g, const float* x, int64_t n, float scale,
                                     float zero, float lo, float hi) {
  constexpr int kLanes = 16;
  constexpr int64_t kTile = 512;  // a multiple of kLanes: an element's lane is its index in the run mod 16
  float scale_terms[kTile], zero_terms[kTile];
  float sum_scale[kLanes] = {}, sum_zero[kLanes] = {};
  for (int64_t start = 0; start < n; start += kTile) {
    const int64_t m = std::min(kTile, n - start);
    learnable_backward_terms<kRelu>(dx + start, scale_terms, zero_terms, g + start, x + start, m, scale, zero,
                                    lo, hi);
    const int64_t whole = m - m % kLanes;
    for (int64_t i = 0; i < whole; i += kLanes)
      for (int j = 0; j < kLanes; ++j) sum_scale[j] += scale_terms[i + j], sum_zero[j] += zero_terms[i + j];
    for (int64_t i = whole; i < m; ++i)
      sum_scale[i - whole] += scale_terms[i], sum_zero[i - whole] += zero_terms[i];
  }
  LearnableSums sums;
  for (int j = 0; j < kLanes; ++j) sums.scale += sum_scale[j], sums.zero += sum_zero[j];
  return sums;
}

// fake_quantize_learnable's backward (LSQ when grad_factor is lsq_gradient_scale):
//   out: dx (outer, C, inner), d_scale (C), d_zero (C)
//   in:  g (outer, C, inner) = dL/dy, x (outer, C, inner), scale (C), zero (C) rounded half up
// Each (channel, outer) run is cut into blocks of kLearnableBlock elements; the blocks run in
// parallel, each returning its partial sums, and a channel's partial sums are added in block
// order. The blocks and their order do not depend on the thread count, so neither does the
// result (the reference twin, fake_quantize_learnable_backward_reference, sums in index order
// in double; the two agree to rounding).
constexpr int64_t kLearnableBlock = 8192;

void fake_quantize_learnable_backward(float* dx, float* d_scale, float* d_zero, const float* g,
                                      const float* x, const float* scale, const int64_t* zero,
                                      const QuantRange& range, const AxisSplit& s, float grad_factor,
                                      bool relu) {
  const float lo = static_cast<float>(range.quant_min), hi = static_cast<float>(range.quant_max);
  const int64_t blocks = std::max<int64_t>(1, (s.inner + kLearnableBlock - 1) / kLearnableBlock);
  const int64_t per_channel = s.outer * blocks, chunks = s.extent * per_channel;
  std::vector<LearnableSums> partial(static_cast<std::size_t>(chunks));
#pragma omp parallel for schedule(static) if (s.outer * s.extent * s.inner >= kParallelGrain)
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t c = k / per_channel, o = k % per_channel / blocks, b = k % blocks;
    const int64_t begin = b * kLearnableBlock, count = std::min(kLearnableBlock, s.inner - begin);
    if (count <= 0) continue;
    const int64_t base = (o * s.extent + c) * s.inner + begin;
    partial[k] = relu ? learnable_backward_run<true>(dx + base, g + base, x + base, count, scale[c],
                                                     static_cast<float>(zero[c]), lo, hi)
                      : learnable_backward_run<false>(dx + base, g + base, x + base, count, scale[c],
                                                      static_cast<float>(zero[c]), lo, hi);
  }
  for (int64_t c = 0; c < s.extent; ++c) {
    double sum_scale = 0, sum_zero = 0;
    for (int64_t k = c * per_channel; k < (c + 1) * per_channel; ++k)
      sum_scale += partial[k].scale, sum_zero += partial[k].zero;
    d_scale[c] = static_cast<float>(sum_scale * grad_factor);
    d_zero[c] = static_cast<float>(sum_zero * grad_factor);
  }
}

}  // namespace

void fake_quantize_reference(float* y, uint8_t* mask, const float* x, const Shape& shape,
                             const QuantParams& params, const QuantRange& range) {
  int64_t numel = 1, inner = 1;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    numel *= shape[d];
    if (params.axis >= 0 && static_cast<int64_t>(d) > params.axis) inner *= shape[d];
  }
  const int64_t extent = params.axis >= 0 ? shape[params.axis] : 1;
  for (int64_t i = 0; i < numel; ++i) {
    const int64_t c = params.axis >= 0 ? i / inner % extent : 0;
    const float scale = params.scale[c], zero = static_cast<float>(params.zero_point[c]);
    const float level = zero + std::nearbyint(x[i] * (1.0f / scale));
    const bool inside =
        level >= static_cast<float>(range.quant_min) && level <= static_cast<float>(range.quant_max);
    const float clamped =
        std::min(std::max(level, static_cast<float>(range.quant_min)), static_cast<float>(range.quant_max));
    y[i] = (clamped - zero) * scale;
    mask[i] = inside ? 1 : 0;
  }
}

void fake_quantize_learnable_backward_reference(float* dx, float* d_scale, float* d_zero, const float* g,
                                                const float* x, const Shape& shape, int64_t axis,
                                                const float* scale, const int64_t* zero,
                                                const QuantRange& range, float grad_factor) {
  int64_t numel = 1, inner = 1;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    numel *= shape[d];
    if (axis >= 0 && static_cast<int64_t>(d) > axis) inner *= shape[d];
  }
  const int64_t extent = axis >= 0 ? shape[axis] : 1;
  std::vector<double> sum_scale(extent), sum_zero(extent);
  for (int64_t i = 0; i < numel; ++i) {
    const int64_t c = axis >= 0 ? i / inner % extent : 0;
    const float sc = scale[c];
    const int64_t level =
        static_cast<int64_t>(std::nearbyint(static_cast<float>(zero[c]) + x[i] * (1.0f / sc)));
    const bool inside = level >= range.quant_min && level <= range.quant_max;
    dx[i] = inside ? g[i] : 0.0f;
    if (inside) {
      const float fake = (static_cast<float>(level) - static_cast<float>(zero[c])) * sc;
      sum_scale[c] += g[i] * (fake - x[i]) * (1.0f / sc);
    } else {
      sum_scale[c] +=
          g[i] * static_cast<float>((level < range.quant_min ? range.quant_min : range.quant_max) - zero[c]);
      sum_zero[c] += -g[i] * sc;
    }
  }
  for (int64_t c = 0; c < extent; ++c) {
    d_scale[c] = static_cast<float>(sum_scale[c] * grad_factor);
    d_zero[c] = static_cast<float>(sum_zero[c] * grad_factor);
  }
}

Tensor fake_quantize(const Tensor& x, const QuantParams& params, const QuantRange& range, bool relu) {
  AxisSplit s = channel_split(x, params.axis, "fake_quantize");
  QF_CHECK(static_cast<int64_t>(params.scale.size()) == s.extent &&
               static_cast<int64_t>(params.zero_point.size()) == s.extent,
           "fake_quantize: ", params.scale.size(), " scales and ", params.zero_point.size(),
           " zero points for ", s.extent, params.is_per_channel() ? " channels" : " tensor");
  for (std::size_t c = 0; c < params.scale.size(); ++c)
    QF_CHECK(params.scale[c] > 0 && std::isfinite(params.scale[c]), "fake_quantize: scale ", c, " is ",
             params.scale[c], ", expected a positive finite number");
  Tensor y = Tensor::empty(x.shape());
  const bool wants_grad = any_requires_grad({&x});
  Mask mask = wants_grad ? new_mask(x.numel()) : nullptr;
  fake_quantize_kernel(y.data(), mask.get(), x.data(), params.scale.data(), params.zero_point.data(), range,
                       s, relu);
  if (!wants_grad) return y;
  return record(y, relu ? "relu_fake_quantize" : "fake_quantize", {x},
                [mask = std::move(mask)](const Tensor& g, const Node&) {
                  return std::vector<Tensor>{straight_through_gradient(g, mask.get())};
                });
}

Tensor fake_quantize_learnable(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                               const QuantRange& range, float grad_factor, bool relu) {
  AxisSplit s = channel_split(x, axis, "fake_quantize_learnable");
  QF_CHECK(scale.shape() == Shape{s.extent} && zero_point.shape() == Shape{s.extent},
           "fake_quantize_learnable: expected scale and zero_point of shape [", s.extent, "], got ",
           scale.shape(), " and ", zero_point.shape());
  const float lo = static_cast<float>(range.quant_min), hi = static_cast<float>(range.quant_max);
  // Forward rounds the float zero point to nearest-even, backward rounds half up
  // (PyTorch's _get_zero_point_from_tensor with is_forward true / false).
  std::vector<float> scales(s.extent);
  std::vector<int64_t> forward_zero(s.extent), backward_zero(s.extent);
  for (int64_t c = 0; c < s.extent; ++c) {
    scales[c] = scale.data()[c];
    QF_CHECK(scales[c] > 0 && std::isfinite(scales[c]), "fake_quantize_learnable: scale ", c, " is ",
             scales[c], ", expected a positive finite number");
    const float z = zero_point.data()[c];
    forward_zero[c] = static_cast<int64_t>(std::fmin(std::fmax(std::nearbyint(z), lo), hi));
    backward_zero[c] = static_cast<int64_t>(std::fmin(std::fmax(z + 0.5f, lo), hi));
  }
  Tensor y = Tensor::empty(x.shape());
  // No mask: the backward recomputes the levels from x.
  fake_quantize_kernel(y.data(), nullptr, x.data(), scales.data(), forward_zero.data(), range, s, relu);
  if (!any_requires_grad({&x, &scale, &zero_point})) return y;

  // Saved for backward: x (outer, C, inner), scales and backward_zero (C).
  Tensor saved_x = x.detach();
  const char* name = relu ? "relu_fake_quantize_learnable" : "fake_quantize_learnable";
  return record(y, name, {x, scale, zero_point}, [=](const Tensor& g, const Node& node) {
    Tensor dx = Tensor::empty(saved_x.shape());
    Tensor d_scale = Tensor::empty({s.extent}), d_zero = Tensor::empty({s.extent});
    fake_quantize_learnable_backward(dx.data(), d_scale.data(), d_zero.data(), g.data(), saved_x.data(),
                                     scales.data(), backward_zero.data(), range, s, grad_factor, relu);
    return std::vector<Tensor>{node.needs_grad(0) ? dx : Tensor(), node.needs_grad(1) ? d_scale : Tensor(),
                               node.needs_grad(2) ? d_zero : Tensor()};
  });
}

std::vector<float> binary_scale(const Tensor& w, int64_t axis) {
  const AxisSplit s = channel_split(w, axis, "binary_scale");
  std::vector<float> alpha(static_cast<std::size_t>(s.extent));
  const float* x = w.data();
  for (int64_t c = 0; c < s.extent; ++c) {
    double sum = 0;  // in index order, so convert and the simulation sum alike
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t i = 0; i < s.inner; ++i) sum += std::fabs(x[(o * s.extent + c) * s.inner + i]);
    const float mean = static_cast<float>(sum / static_cast<double>(s.outer * s.inner));
    alpha[c] = std::max(mean, std::numeric_limits<float>::epsilon());
  }
  return alpha;
}

Tensor fake_quantize_binary(const Tensor& w, const Tensor& alpha, int64_t axis, float grad_factor) {
  const AxisSplit s = channel_split(w, axis, "fake_quantize_binary");
  QF_CHECK(alpha.shape() == Shape{s.extent}, "fake_quantize_binary: expected alpha of shape [", s.extent,
           "], got ", alpha.shape());
  for (int64_t c = 0; c < s.extent; ++c)
    QF_CHECK(alpha.data()[c] > 0 && std::isfinite(alpha.data()[c]), "fake_quantize_binary: alpha ", c, " is ",
             alpha.data()[c], ", expected a positive finite number");
  // Saved for backward: x (outer, C, inner) and alpha (C).
  const Tensor x = w.detach(), a = alpha.detach().clone();
  Tensor y = Tensor::empty(w.shape());
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t c = 0; c < s.extent; ++c)
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t k = (o * s.extent + c) * s.inner + i;
        y.data()[k] = x.data()[k] >= 0.0f ? a.data()[c] : -a.data()[c];
      }
  if (!any_requires_grad({&w, &alpha})) return y;
  return record(y, "fake_quantize_binary", {w, alpha}, [=](const Tensor& g, const Node& node) {
    Tensor dx = Tensor::empty(x.shape()), d_alpha = Tensor::zeros({s.extent});
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t c = 0; c < s.extent; ++c)
        for (int64_t i = 0; i < s.inner; ++i) {
          const int64_t k = (o * s.extent + c) * s.inner + i;
          const float xv = x.data()[k];
          dx.data()[k] = std::fabs(xv) <= a.data()[c] ? g.data()[k] : 0.0f;
          d_alpha.data()[c] += xv >= 0.0f ? g.data()[k] : -g.data()[k];
        }
    for (int64_t c = 0; c < s.extent; ++c) d_alpha.data()[c] *= grad_factor;
    return std::vector<Tensor>{node.needs_grad(0) ? dx : Tensor(), node.needs_grad(1) ? d_alpha : Tensor()};
  });
}

AmaxQuantized fake_quantize_amax(const Tensor& x, float amax, int bits, bool is_unsigned) {
  QF_CHECK(amax > 0 && std::isfinite(amax), "fake_quantize_amax: amax must be positive, got ", amax);
  QF_CHECK(bits >= 2 && bits <= 16, "fake_quantize_amax: bits must be in 2..16, got ", bits);
  const float bound =
      is_unsigned ? static_cast<float>((1 << bits) - 1) : static_cast<float>((1 << (bits - 1)) - 1);
  const float scale = bound / amax, lower = is_unsigned ? 0.0f : -bound;
  AmaxQuantized result{Tensor::empty(x.shape()), Tensor::empty(x.shape()), scale};
  std::vector<uint8_t> mask(x.numel());
  const float* px = x.data();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float q = std::fmin(std::fmax(std::nearbyint(px[i] * scale), lower), bound);
    result.integer.data()[i] = q;
    result.fake.data()[i] = q / scale;
    mask[i] = std::fabs(px[i]) <= amax;
  }
  result.fake =
      record(result.fake, "fake_quantize_amax", {x}, [mask = std::move(mask)](const Tensor& g, const Node&) {
        return std::vector<Tensor>{straight_through_gradient(g, mask.data())};
      });
  return result;
}

}  // namespace qforge::quant
