// Matrix products: matmul (2-D, batched 3-D, or N-D times a 2-D matrix) and linear
// (y = x·Wᵀ + b, PyTorch's F.linear). GEMMs go through kernels::gemm (oneDNN's sgemm,
// chosen over OpenBLAS by measurement; Note [GEMM backend] in core/kernels/gemm.cpp).
#pragma once

#include "core/tensor.h"

namespace qforge {

//   a (M,K) · b (K,N) -> (M,N)
//   a (B,M,K) · b (B,K,N) -> (B,M,N)
//   a (...,M,K) · b (K,N) -> (...,M,N)
Tensor matmul(const Tensor& a, const Tensor& b);

//   x (...,in), weight (out,in), bias (out) or undefined -> (...,out)
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace qforge
