// Derivative table (y = op(x) or y = a op b; g = dL/dy):
//   add       da = g              db = g
//   sub       da = g              db = -g
//   mul       da = g·b            db = g·a
//   div       da = g/b            db = -g·a/b²
//   neg       dx = -g
//   exp       dx = g·y
//   log       dx = g/x
//   pow(p)    dx = g·p·x^(p-1)
//   sqrt      dx = g/(2y)
//   clamp     dx = g where min <= x <= max, else 0   (PyTorch: boundary passes)
//   relu      dx = g where x > 0, else 0
//   sigmoid   dx = g·y·(1-y)
//   tanh      dx = g·(1-y²)
// Broadcast inputs get their gradient summed back to their shape (sum_to_shape).
#include "core/ops/elementwise.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops/broadcast.h"
#include "core/profiler.h"
#include "core/threading.h"

namespace qforge {

namespace {

// out[i] = f(in[i]) over n elements, threaded when large.
template <typename F>
void map(float* out, const float* in, int64_t n, F f) {
#pragma omp parallel for if (n >= kParallelGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = f(in[i]);
}

// out[i] = f(a[i], b[i]) over n elements, threaded when large.
template <typename F>
void zip(float* out, const float* a, const float* b, int64_t n, F f) {
#pragma omp parallel for if (n >= kParallelGrain) schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
}

// Applies f over broadcast inputs; the same-shape case is one flat loop.
template <typename F>
Tensor binary_forward(const Tensor& a, const Tensor& b, const char* name, F f) {
  const ProfileScope profile("forward", name);
  if (a.shape() == b.shape()) {
    Tensor out = Tensor::empty(a.shape());
    zip(out.data(), a.data(), b.data(), out.numel(), f);
    return out;
  }
  BroadcastPlan plan(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(plan.out_shape);
  float* y = out.data();
  const float* pa = a.data();
  const float* pb = b.data();
  plan.for_each_row([&](int64_t o, int64_t ia, int64_t ib, int64_t count, int64_t sa, int64_t sb) {
    for (int64_t i = 0; i < count; ++i) y[o + i] = f(pa[ia + i * sa], pb[ib + i * sb]);
  });
  return out;
}

// Unary op whose backward needs x and/or y: grad_rule(x, y, g) -> dx.
template <typename Forward, typename GradRule>
Tensor unary(const Tensor& x, const char* name, Forward forward, GradRule grad_rule) {
  const ProfileScope profile("forward", name);
  Tensor y = Tensor::empty(x.shape());
  map(y.data(), x.data(), x.numel(), forward);
  if (!any_requires_grad({&x})) return y;
  Tensor saved_x = x.detach(), saved_y = y.detach();  // (shape of x)
  return record(y, name, {x}, [saved_x, saved_y, grad_rule](const Tensor& grad, const Node&) {
    Tensor dx = Tensor::empty(saved_x.shape());
    const float* px = saved_x.data();
    const float* py = saved_y.data();
    const float* g = grad.data();
    float* out = dx.data();
    int64_t n = dx.numel();
#pragma omp parallel for if (n >= kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) out[i] = grad_rule(px[i], py[i], g[i]);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = binary_forward(a, b, "add", [](float u, float v) { return u + v; });
  const Shape &sa = a.shape(), &sb = b.shape();
  return record(y, "add", {a, b}, [sa, sb](const Tensor& g, const Node& node) {
    return std::vector<Tensor>{node.needs_grad(0) ? sum_to_shape(g, sa) : Tensor(),
                               node.needs_grad(1) ? sum_to_shape(g, sb) : Tensor()};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = binary_forward(a, b, "sub", [](float u, float v) { return u - v; });
  const Shape &sa = a.shape(), &sb = b.shape();
  return record(y, "sub", {a, b}, [sa, sb](const Tensor& g, const Node& node) {
    return std::vector<Tensor>{node.needs_grad(0) ? sum_to_shape(g, sa) : Tensor(),
                               node.needs_grad(1) ? sum_to_shape(neg(g), sb) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = binary_forward(a, b, "mul", [](float u, float v) { return u * v; });
  if (!any_requires_grad({&a, &b})) return y;
  Tensor saved_a = a.detach(), saved_b = b.detach();
  return record(y, "mul", {a, b}, [saved_a, saved_b](const Tensor& g, const Node& node) {
    return std::vector<Tensor>{
        node.needs_grad(0) ? sum_to_shape(mul(g, saved_b), saved_a.shape()) : Tensor(),
        node.needs_grad(1) ? sum_to_shape(mul(g, saved_a), saved_b.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = binary_forward(a, b, "div", [](float u, float v) { return u / v; });
  if (!any_requires_grad({&a, &b})) return y;
  Tensor saved_b = b.detach(), saved_y = y.detach();
  Shape sa = a.shape();
  return record(y, "div", {a, b}, [saved_b, saved_y, sa](const Tensor& g, const Node& node) {
    Tensor g_over_b = div(g, saved_b);  // (broadcast shape)
    return std::vector<Tensor>{
        node.needs_grad(0) ? sum_to_shape(g_over_b, sa) : Tensor(),
        // d(a/b)/db = -a/b² = -y/b
        node.needs_grad(1) ? sum_to_shape(neg(mul(g_over_b, saved_y)), saved_b.shape()) : Tensor()};
  });
}

Tensor add(const Tensor& a, float b) {
  Tensor y = Tensor::empty(a.shape());
  map(y.data(), a.data(), a.numel(), [b](float u) { return u + b; });
  return record(y, "add_scalar", {a}, [](const Tensor& g, const Node&) { return std::vector<Tensor>{g}; });
}

Tensor mul(const Tensor& a, float b) {
  Tensor y = Tensor::empty(a.shape());
  map(y.data(), a.data(), a.numel(), [b](float u) { return u * b; });
  return record(y, "mul_scalar", {a},
                [b](const Tensor& g, const Node&) { return std::vector<Tensor>{mul(g, b)}; });
}

Tensor neg(const Tensor& x) { return mul(x, -1.0f); }

Tensor exp(const Tensor& x) {
  return unary(
      x, "exp", [](float v) { return std::exp(v); }, [](float, float y, float g) { return g * y; });
}

Tensor log(const Tensor& x) {
  return unary(
      x, "log", [](float v) { return std::log(v); }, [](float v, float, float g) { return g / v; });
}

Tensor pow(const Tensor& x, float exponent) {
  return unary(
      x, "pow", [exponent](float v) { return std::pow(v, exponent); },
      [exponent](float v, float, float g) { return g * exponent * std::pow(v, exponent - 1.0f); });
}

Tensor sqrt(const Tensor& x) {
  return unary(
      x, "sqrt", [](float v) { return std::sqrt(v); },
      [](float, float y, float g) { return g / (2.0f * y); });
}

Tensor clamp(const Tensor& x, float min_value, float max_value) {
  QF_CHECK(min_value <= max_value, "clamp: min ", min_value, " is greater than max ", max_value);
  return unary(
      x, "clamp", [=](float v) { return std::fmin(std::fmax(v, min_value), max_value); },
      [=](float v, float, float g) { return (v >= min_value && v <= max_value) ? g : 0.0f; });
}

Tensor relu(const Tensor& x) {
  return unary(
      x, "relu", [](float v) { return relu_value(v); },
      [](float v, float, float g) { return v > 0.0f ? g : 0.0f; });
}

Tensor sigmoid(const Tensor& x) {
  return unary(
      x, "sigmoid", [](float v) { return 1.0f / (1.0f + std::exp(-v)); },
      [](float, float y, float g) { return g * y * (1.0f - y); });
}

Tensor tanh(const Tensor& x) {
  return unary(
      x, "tanh", [](float v) { return std::tanh(v); },
      [](float, float y, float g) { return g * (1.0f - y * y); });
}

void add_(Tensor& target, const Tensor& source) {
  if (target.shape() == source.shape()) {
    zip(target.data(), target.data(), source.data(), target.numel(), [](float u, float v) { return u + v; });
    return;
  }
  BroadcastPlan plan(target.shape(), source.shape(), "add_");
  QF_CHECK(plan.out_shape == target.shape(), "add_: cannot add ", source.shape(), " into ", target.shape());
  float* y = target.data();
  const float* s = source.data();
  plan.for_each_row([&](int64_t o, int64_t, int64_t ib, int64_t count, int64_t, int64_t sb) {
    for (int64_t i = 0; i < count; ++i) y[o + i] += s[ib + i * sb];
  });
}

void mul_(Tensor& target, float factor) {
  map(target.data(), target.data(), target.numel(), [factor](float u) { return u * factor; });
}

void axpy_(Tensor& target, float alpha, const Tensor& source) {
  QF_CHECK(target.shape() == source.shape(), "axpy_: shapes ", target.shape(), " and ", source.shape(),
           " differ");
  zip(target.data(), target.data(), source.data(), target.numel(),
      [alpha](float u, float v) { return u + alpha * v; });
}

}  // namespace qforge
