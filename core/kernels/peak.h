// This machine's fp32 peak as the benchmarks quote it: the GFLOP/s of a 2048³ sgemm,
// the better of OpenBLAS and oneDNN matmul, on the current thread count.
#pragma once

#include <functional>

namespace qforge::kernels {

// Seconds per call of `call`: one warm-up, then repeats until min_seconds have passed.
double seconds_per_call(const std::function<void()>& call, double min_seconds);

struct PeakMeasurement {
  double openblas_gflops, onednn_gflops;
  double peak_gflops() const { return openblas_gflops > onednn_gflops ? openblas_gflops : onednn_gflops; }
};

PeakMeasurement measure_fp32_peak(int size = 2048, double min_seconds = 0.3);

// GFLOP/s of one GEMM shape (M,N,K) through both libraries.
PeakMeasurement measure_gemm(int m, int n, int k, double min_seconds);

}  // namespace qforge::kernels
