#include "core/kernels/gemm.h"

#include <cblas.h>

namespace qforge::kernels {

void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda),
              b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
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
