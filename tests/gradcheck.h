// Finite-difference gradient check (flashlight's jacobian test, tinygrad's helper).
// For f: inputs -> output, it compares the autograd gradient of L = Σ f(inputs)·R
// (R a fixed random tensor) against central differences of L, element by element, for
// every input that requires grad. L is accumulated in double, so the terms an
// element does not touch cancel exactly and the difference sees only its own effect.
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.h"
#include "core/threading.h"

namespace qforge::testing {

// Why not double: qforge's tensors and kernels are float32 only (as the ops under test run
// in training), so f is evaluated in float and only L is summed in double. A float f
// carries relative rounding ~1e-7·|f| per output; divided by the step that is ~1e-5·Σ|R·f|
// in the quotient, which sets the tolerances below. The step is a power of two, so x ± h
// is exact in float, and the five-point stencil makes the truncation error O(h⁴) ~ 1e-8
// rather than the central difference's O(h²) ~ 1e-4.
struct GradcheckOptions {
  double step = 1.0 / 128;           // 2^-7
  double absolute_tolerance = 1e-4;  // was 2e-3 with a 1e-2 central difference; 5e-5 fails
  double relative_tolerance = 1e-3;  // was 1e-2
  uint64_t seed = 1234;
};

using TensorFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// Runs the check inside doctest assertions; returns true when every element passed.
bool check_gradients(const TensorFunction& function, const std::vector<Tensor>& inputs,
                     const GradcheckOptions& options = {});

// A random f32 leaf that requires grad, values uniform in [low, high].
Tensor random_leaf(const Shape& shape, uint64_t seed, float low = -1.0f, float high = 1.0f);
// A leaf whose values are a shuffled grid with spacing `gap`: no two values within
// `gap` of each other, so max/argmax stay put under a finite-difference step.
Tensor distinct_leaf(const Shape& shape, uint64_t seed, float gap = 0.05f);

// |a-b| <= atol + rtol·|b| for every element, reporting the first failure.
bool all_close(const Tensor& actual, const Tensor& expected, double rtol = 1e-5, double atol = 1e-6);

// This machine's channel block (channel_block()); when it has none (oneDNN below AVX2),
// notes in the test log that nothing runs blocked, and returns 0: the caller's test returns.
int64_t channel_block_or_note();

// f() run with `threads` threads, the count restored after (for "the same on any thread count").
template <typename F>
auto with_threads(int threads, F f) {
  const int saved = num_threads();
  set_num_threads(threads);
  struct Restore {
    int saved;
    ~Restore() { set_num_threads(saved); }
  } restore{saved};
  return f();
}

}  // namespace qforge::testing
