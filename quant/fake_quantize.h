// FakeQuantize as autograd ops: quantize and dequantize in float, so training feels the
// rounding and clamping of the integer runtime (Jacob et al. 2018; PyTorch's
// fake_quantize_per_{tensor,channel}_affine and their learnable variants).
//   forward   y = (clamp(nearbyint(x/s) + z, qmin, qmax) − z)·s        (quant_params.h)
//   backward  the straight-through estimator (straight_through_gradient in the .cpp):
//             dx = dy where qmin <= nearbyint(x/s)+z <= qmax, else 0
// The learnable variant (LSQ, Esser et al. 2020) also returns gradients for s and z,
// scaled by lsq_gradient_scale.
// The NVIDIA convention (scale as a multiplier (2^(b-1)-1)/amax, mask |x| <= amax) is
// fake_quantize_amax.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "quant/quant_params.h"

namespace qforge::quant {

// Per tensor (params.axis < 0) or per channel along params.axis. relu: quantize relu(x)
// in the same pass, values and gradient exactly relu's then fake_quantize's (Note [ReLU in
// the quantizer], fake_quantize.cpp).
Tensor fake_quantize(const Tensor& x, const QuantParams& params, const QuantRange& range, bool relu = false);

// Learnable scale and zero point, as PyTorch's _fake_quantize_learnable_per_{tensor,channel}_affine:
//   scale, zero_point: (1) for per tensor (axis < 0), (C) for per channel along axis;
//   zero_point is a float tensor, rounded (forward) and clamped to the range.
// grad_factor scales both parameter gradients (LSQ: lsq_gradient_scale). relu: of relu(x),
// fused, as fake_quantize's.
Tensor fake_quantize_learnable(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                               const QuantRange& range, float grad_factor = 1.0f, bool relu = false);

// The reference twin of fake_quantize's kernel (Note [Backends]): one element at a time
// in index order, its channel found by division, no parallel split and no shared helper —
// y = (clamp(nearbyint(x·(1/s)) + z) − z)·s and mask = 1 where the level was in range.
void fake_quantize_reference(float* y, uint8_t* mask, const float* x, const Shape& shape,
                             const QuantParams& params, const QuantRange& range);

// The reference twin of fake_quantize_learnable's backward: one element at a time in index
// order, d_scale and d_zero summed per channel in double — dx = g where the level (zero +
// nearbyint(x·(1/s)), zero rounded half up) is in range; the sums as in the table at the top
// of fake_quantize.cpp, times grad_factor. axis < 0: per tensor.
void fake_quantize_learnable_backward_reference(float* dx, float* d_scale, float* d_zero, const float* g,
                                                const float* x, const Shape& shape, int64_t axis,
                                                const float* scale, const int64_t* zero,
                                                const QuantRange& range, float grad_factor);

// LSQ's gradient scale for a learned step size (Esser et al. 2020, §2.2): 1/√(N·Q_P), N
// the elements sharing the scale and Q_P the largest level — it keeps the step size's
// updates on the scale of the weights' own, whatever the tensor size and bit width.
// Q_P is quant_max, as PyTorch's _LearnableFakeQuantize; a signed 1-bit grid {−1, 0} has
// quant_max 0, and there the largest magnitude, 1, stands in (1/√0 would make the scale NaN).
inline float lsq_gradient_scale(int64_t elements_per_scale, const QuantRange& range) {
  const int64_t largest = range.quant_max > 0 ? range.quant_max : std::max<int64_t>(-range.quant_min, 1);
  return 1.0f / std::sqrt(static_cast<float>(elements_per_scale) * static_cast<float>(largest));
}

// Note [Binary weights]
// BinaryConnect (Courbariaux et al. 2015) and XNOR-Net's binary-weight networks (Rastegari et
// al. 2016): a weight keeps only its sign, times one scale α per output channel (or tensor):
//   forward   ŵ = α_c·b,  b = +1 where w >= 0, −1 below
//   backward  dw = g·[|w| <= α_c]      sign's straight-through estimator, clipped at α
//             dα_c = Σ g·b (× grad_factor)   when α is learned (LSQ-style)
// α is mean |w| over the channel (binary_scale: XNOR-Net's optimal α for a fixed b), recomputed
// from the weights at every step, or a learned parameter initialized to it. The integer model
// holds b as int8 ±1 with α as the weight scale — the existing u8×s8 kernels compute
// α·Σ b·x exactly — and a .qfm stores b one bit per weight (Note [Packed weights]).
// The affine 1-bit grid {−1, 0}·s cannot change a weight's sign, which is why 1-bit affine
// weights do not learn.
//
// α per channel of `axis` (or one, axis < 0): mean |w|, at least FLT_EPSILON.
std::vector<float> binary_scale(const Tensor& w, int64_t axis);
// alpha: (C) per channel of axis, (1) per tensor; the gradient for alpha (when it requires one)
// is scaled by grad_factor.
Tensor fake_quantize_binary(const Tensor& w, const Tensor& alpha, int64_t axis, float grad_factor = 1.0f);

// NVIDIA pytorch-quantization's tensor_quant convention: scale = (2^(b-1)-1)/amax (signed)
// or (2^b-1)/amax (unsigned), q = clamp(round(x·scale), ±(2^(b-1)-1) or 0..2^b-1),
// y = q/scale; gradient passes where |x| <= amax.
struct AmaxQuantized {
  Tensor fake;     // y
  Tensor integer;  // q as floats, for inspection
  float scale;     // the multiplier
};
AmaxQuantized fake_quantize_amax(const Tensor& x, float amax, int bits, bool is_unsigned);

}  // namespace qforge::quant
