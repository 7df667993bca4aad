// Derivative table (g = dL/dy):
//   y = A·B           dA = g·Bᵀ            dB = Aᵀ·g
//   y = x·Wᵀ + b      dx = g·W             dW = gᵀ·x        db = Σ_rows g
#include "core/ops/linalg.h"

#include "core/autograd.h"
#include "core/flop_counter.h"
#include "core/kernels/gemm.h"
#include "core/profiler.h"

namespace qforge {

Tensor matmul(const Tensor& a, const Tensor& b) {
  QF_CHECK(a.dim() >= 2 && (b.dim() == 2 || (b.dim() == 3 && a.dim() == 3)),
           "matmul: expected (M,K)·(K,N), (B,M,K)·(B,K,N) or (...,M,K)·(K,N), got ", a.shape(), " and ",
           b.shape());
  const bool is_batched = b.dim() == 3;
  const int64_t k = a.size(-1), n = b.size(-1);
  QF_CHECK(b.size(-2) == k, "matmul: inner sizes differ: ", a.shape(), " · ", b.shape());
  QF_CHECK(!is_batched || a.size(0) == b.size(0), "matmul: batch sizes differ: ", a.shape(), " · ",
           b.shape());
  const int64_t batches = is_batched ? a.size(0) : 1;
  const int64_t m = is_batched ? a.size(1) : a.numel() / k;  // leading axes fold into M
  Shape out_shape = a.shape();
  out_shape.back() = n;
  auto describe = [=] {
    return std::to_string(batches) + "x(" + std::to_string(m) + "x" + std::to_string(k) + ")·(" +
           std::to_string(k) + "x" + std::to_string(n) + ")";
  };
  const ProfileScope profile("forward", "matmul", describe);
  Tensor y = Tensor::empty(out_shape);
  for (int64_t i = 0; i < batches; ++i)
    kernels::gemm(false, false, m, n, k, 1.0f, a.data() + i * m * k, k, b.data() + i * k * n, n, 0.0f,
                  y.data() + i * m * n, n);
  count_multiply_adds(static_cast<double>(batches) * m * n * k);
  if (!any_requires_grad({&a, &b})) return y;
  Tensor saved_a = a.detach(), saved_b = b.detach();
  return record(y, "matmul", {a, b}, [=](const Tensor& g, const Node& node) {
    Tensor da, db;
    if (node.needs_grad(0)) {  // dA = g·Bᵀ   (B?,M,K)
      const ProfileScope profile_data("backward-data", "matmul", describe);
      count_multiply_adds(static_cast<double>(batches) * m * n * k);
      da = Tensor::empty(saved_a.shape());
      for (int64_t i = 0; i < batches; ++i)
        kernels::gemm(false, true, m, k, n, 1.0f, g.data() + i * m * n, n, saved_b.data() + i * k * n, n,
                      0.0f, da.data() + i * m * k, k);
    }
    if (node.needs_grad(1)) {  // dB = Aᵀ·g   (B?,K,N)
      const ProfileScope profile_weights("backward-weights", "matmul", describe);
      count_multiply_adds(static_cast<double>(batches) * m * n * k);
      db = Tensor::empty(saved_b.shape());
      for (int64_t i = 0; i < batches; ++i)
        kernels::gemm(true, false, k, n, m, 1.0f, saved_a.data() + i * m * k, k, g.data() + i * m * n, n,
                      0.0f, db.data() + i * k * n, n);
    }
    return std::vector<Tensor>{da, db};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  QF_CHECK(weight.dim() == 2, "linear: expected 2-D weight (out,in), got ", weight.shape());
  const int64_t in = weight.size(1), out = weight.size(0);
  QF_CHECK(x.dim() >= 1 && x.size(-1) == in, "linear: expected input (...,", in, ") for weight ",
           weight.shape(), ", got ", x.shape());
  QF_CHECK(!bias.defined() || bias.shape() == Shape{out}, "linear: expected bias [", out, "], got ",
           bias.shape());
  const int64_t rows = x.numel() / in;
  Shape out_shape = x.shape();
  out_shape.back() = out;
  auto describe = [=] {
    return std::to_string(rows) + "x" + std::to_string(in) + " -> " + std::to_string(out);
  };
  const ProfileScope profile("forward", "linear", describe);
  Tensor y = Tensor::empty(out_shape);
  float* py = y.data();
  if (bias.defined()) {  // start from the bias, let the GEMM accumulate (beta = 1)
    for (int64_t r = 0; r < rows; ++r) std::copy_n(bias.data(), out, py + r * out);
  }
  kernels::gemm(false, true, rows, out, in, 1.0f, x.data(), in, weight.data(), in,
                bias.defined() ? 1.0f : 0.0f, py, out);
  count_multiply_adds(static_cast<double>(rows) * out * in);
  if (!any_requires_grad({&x, &weight, &bias})) return y;
  Tensor saved_x = x.detach(), saved_w = weight.detach();  // (rows,in), (out,in)
  return record(y, "linear", {x, weight, bias}, [=](const Tensor& g, const Node& node) {
    Tensor dx, dw, db;
    if (node.needs_grad(0)) {  // dx = g·W   (rows,in)
      const ProfileScope profile_data("backward-data", "linear", describe);
      count_multiply_adds(static_cast<double>(rows) * out * in);
      dx = Tensor::empty(saved_x.shape());
      kernels::gemm(false, false, rows, in, out, 1.0f, g.data(), out, saved_w.data(), in, 0.0f, dx.data(),
                    in);
    }
    if (node.needs_grad(1)) {  // dW = gᵀ·x   (out,in)
      const ProfileScope profile_weights("backward-weights", "linear", describe);
      count_multiply_adds(static_cast<double>(rows) * out * in);
      dw = Tensor::empty(saved_w.shape());
      kernels::gemm(true, false, out, in, rows, 1.0f, g.data(), out, saved_x.data(), in, 0.0f, dw.data(), in);
    }
    if (node.needs_grad(2)) {  // db = Σ_rows g   (out)
      db = Tensor::zeros({out});
      const float* pg = g.data();
      float* pb = db.data();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) pb[o] += pg[r * out + o];
    }
    return std::vector<Tensor>{dx, dw, db};
  });
}

}  // namespace qforge
