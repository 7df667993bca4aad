// fp32 GEMM, row-major: C = alpha·op(A)·op(B) + beta·C, op = identity or transpose.
// `gemm` is the fast path (oneDNN sgemm, see gemm.cpp); `gemm_reference` is three loops in double
// for tests and for reading. Pure functions over pointers and sizes.
#pragma once

#include <cstdint>

namespace qforge::kernels {

//   A: (M,K) or, transposed, (K,M) with row stride lda
//   B: (K,N) or, transposed, (N,K) with row stride ldb
//   C: (M,N) with row stride ldc
void gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

void gemm_reference(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc);

}  // namespace qforge::kernels
