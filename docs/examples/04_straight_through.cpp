// Chapter 4, fake quantization and the straight-through estimator: the loss of a conv
// whose weights are rounded onto a grid is flat almost everywhere, so its true gradient
// with respect to the weights is all zeros; the STE passes the gradient through where
// the weight is inside the grid's range, and LSQ also gives the scale a gradient.
#include <cstdio>

#include "core/autograd.h"
#include "core/ops.h"
#include "quant/fake_quantize.h"

using namespace qforge;
using namespace qforge::quant;

namespace {

// The conv on the reference kernels (plain loops): the same floats on every machine.
Tensor reference_conv(const Tensor& x, const Tensor& w) {
  return conv2d(x, w, Tensor(), {}, Backend::reference);
}

// L = Σ R·conv(x, w) for a fixed random R: one number per weight setting.
double loss_of(const Tensor& y, const Tensor& r) {
  double total = 0;
  for (int64_t i = 0; i < y.numel(); ++i) total += static_cast<double>(y.data()[i]) * r.data()[i];
  return total;
}

void print_row(const char* label, const float* values) {
  std::printf("  %-34s", label);
  for (int i = 0; i < 9; ++i) std::printf(" %7.3f", values[i]);
  std::printf("\n");
}

}  // namespace

int main() {
  Generator generator(7);
  const Tensor x = Tensor::randn({1, 1, 6, 6}, generator), r = Tensor::randn({1, 1, 4, 4}, generator);
  Tensor w = Tensor::uniform({1, 1, 3, 3}, generator, -0.6f, 0.6f);
  w.data()[8] = 0.9f;  // one weight beyond the grid's range (4 bits, scale 0.1: -0.8 .. 0.7)
  const QuantRange range = quant_range(4, true);
  const QuantParams params{{0.1f}, {0}, -1};
  print_row("weights w", w.data());
  const Tensor wq = fake_quantize(w, params, range);
  print_row("fake-quantized w^ (scale 0.1, int4)", wq.data());

  // The true gradient of the rounded loss, by central differences (step 1e-3 < half a grid step).
  float numeric[9];
  for (int i = 0; i < 9; ++i) {
    NoGradGuard no_grad;
    const float original = w.data()[i];
    w.data()[i] = original + 1e-3f;
    const double plus = loss_of(reference_conv(x, fake_quantize(w, params, range)), r);
    w.data()[i] = original - 1e-3f;
    const double minus = loss_of(reference_conv(x, fake_quantize(w, params, range)), r);
    w.data()[i] = original;
    numeric[i] = static_cast<float>((plus - minus) / 2e-3);
  }
  std::printf("\ndL/dw:\n");
  print_row("round(): finite differences", numeric);

  // The float conv's gradient (no quantization) ...
  Tensor leaf = w.clone().set_requires_grad(true);
  reference_conv(x, leaf).backward(r);
  print_row("float conv (no rounding)", leaf.grad().data());
  // ... and the STE's: the same, except where the weight was clamped.
  Tensor ste = w.clone().set_requires_grad(true);
  reference_conv(x, fake_quantize(ste, params, range)).backward(r);
  print_row("STE (fake_quantize backward)", ste.grad().data());

  // LSQ: the scale is a parameter too, with its gradient scaled by 1/sqrt(N·Qp).
  Tensor lsq_w = w.clone().set_requires_grad(true), scale = Tensor::full({1}, 0.1f).set_requires_grad(true);
  const float factor = lsq_gradient_scale(9, range);
  reference_conv(x, fake_quantize_learnable(lsq_w, scale, Tensor::zeros({1}), -1, range, factor)).backward(r);
  print_row("LSQ (weights)", lsq_w.grad().data());
  std::printf("  LSQ dL/dscale = %.4f (gradient scale 1/sqrt(9*7) = %.4f)\n", scale.grad().data()[0], factor);
  return 0;
}
