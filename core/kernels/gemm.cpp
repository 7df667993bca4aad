// GEMM backend choice (Note [GEMM backend]), by measurement (docs/kernels.md):
// in isolation OpenBLAS's sgemm and oneDNN's are close, but inside a training step
// OpenBLAS's own pthread pool spin-yields against the OpenMP pool that oneDNN's
// convolutions and our loops use, and the whole step loses 30-50% on 2 cores.
// dnnl_sgemm runs on the OpenMP pool, so GEMMs go there. OpenBLAS stays linked as
// the alternative the peak benchmark measures.
#include "core/kernels/gemm.h"

#include <oneapi/dnnl/dnnl.h>

namespace qforge::kernels {

void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  // dnnl_sgemm is row-major, like us.
  dnnl_sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm_reference(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double total = 0;
      for (int64_t p = 0; p < k; ++p) {
        float av = transpose_a ? a[p * lda + i] : a[i * lda + p];
        float bv = transpose_b ? b[j * ldb + p] : b[p * ldb + j];
        total += static_cast<double>(av) * bv;
      }
      float previous = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];  // beta 0 ignores NaN in C
      c[i * ldc + j] = static_cast<float>(alpha * total) + previous;
    }
}

}  // namespace qforge::kernels
