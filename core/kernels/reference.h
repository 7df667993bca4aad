// Reference twins of the pointwise and pooling kernels (Note [Backends], core/backend.h):
// plain serial loops written from each op's definition — no OpenMP, no fast paths, no
// library calls beyond <cmath>, statistics in double. tests/core/test_backend_ops.cpp
// holds every fast op to these on a table of shapes past each parallel grain and block.
// (The GEMM's and convolution's twins are gemm_reference and conv2d_reference; the
// fake-quant one is quant/fake_quantize.h's fake_quantize_reference.)
#pragma once

#include <cstdint>

namespace qforge::kernels::reference {

// A 2-D pooling window as PyTorch's: kernel, stride, padding, dilation per axis.
struct Window2d {
  int64_t kernel_height, kernel_width, stride_height, stride_width;
  int64_t padding_height, padding_width, dilation_height, dilation_width;
};

// max_pool2d over `planes` planes of H×W: y, argmax (planes, OH, OW); argmax is the flat
// index within the plane. Padding never wins; ties keep the first element in scan order;
// a NaN wins, the last of several (PyTorch's `val > max || isnan(val)` in scan order).
void max_pool2d(float* y, int32_t* argmax, const float* x, int64_t planes, int64_t height, int64_t width,
                int64_t out_height, int64_t out_width, const Window2d& w);

// batch_norm forward on x (N, C, S): training normalizes with the batch's mean and biased
// variance and writes them to mean, variance; evaluation reads running mean/variance from
// them. gamma, beta may be null (1 and 0).
//   y = gamma·(x − mean)/√(variance + eps) + beta
void batch_norm_forward(float* y, double* mean, double* variance, const float* x, int64_t batch,
                        int64_t channels, int64_t spatial, const float* gamma, const float* beta,
                        bool is_training, float eps);

// Its backward, from the definition (x̂ = (x − mean)/√(variance + eps), M = N·S):
//   dgamma = Σ g·x̂,  dbeta = Σ g
//   training: dx = gamma/√(variance+eps) · (g − Σg/M − x̂·Σ(g·x̂)/M);  evaluation: dx = gamma·g/√(…)
void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* g, const float* x,
                         const double* mean, const double* variance, int64_t batch, int64_t channels,
                         int64_t spatial, const float* gamma, bool is_training, float eps);

// One LSTM cell on gates (B, 4H, order i,f,g,o) and c_prev (B, H) with libm's exp and tanh:
//   c = σ(f)·c_prev + σ(i)·tanh(g),  h = σ(o)·tanh(c)
void lstm_cell(float* h, float* c, const float* gates, const float* c_prev, int64_t batch, int64_t hidden);

}  // namespace qforge::kernels::reference
