// Elementwise ops: arithmetic with broadcasting and the pointwise nonlinearities.
// Every function records an autograd Node when an input requires grad.
// The trailing-underscore forms work in place and never record (optimizer updates,
// gradient accumulation).
#pragma once

#include "core/tensor.h"

namespace qforge {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, float b);
Tensor mul(const Tensor& a, float b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor sqrt(const Tensor& x);
Tensor clamp(const Tensor& x, float min_value, float max_value);
Tensor relu(const Tensor& x);
// relu's formula on one value, for the kernels that apply it as they load (the fused pool,
// quantizer and observer): one definition, so every fused path is the op bit for bit.
// (-0 and NaN give +0, as the op gives them.)
inline float relu_value(float v) { return v > 0.0f ? v : 0.0f; }
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, float b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, float b) { return add(a, -b); }
inline Tensor operator*(const Tensor& a, float b) { return mul(a, b); }
inline Tensor operator*(float a, const Tensor& b) { return mul(b, a); }
inline Tensor operator/(const Tensor& a, float b) { return mul(a, 1.0f / b); }
inline Tensor operator-(const Tensor& x) { return neg(x); }

// In place, no autograd: target += source (source broadcast to target's shape),
// target *= factor, target += alpha * source (same shape).
void add_(Tensor& target, const Tensor& source);
void mul_(Tensor& target, float factor);
void axpy_(Tensor& target, float alpha, const Tensor& source);

}  // namespace qforge
