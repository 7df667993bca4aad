#include "core/kernels/peak.h"

#include <chrono>
#include <functional>
#include <vector>

#include <cblas.h>

#include "core/kernels/gemm.h"
#include "core/kernels/onednn_context.h"

namespace qforge::kernels {

double seconds_per_call(const std::function<void()>& call, double min_seconds) {
  call();  // warm-up
  int64_t calls = 0;
  auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  do {
    call();
    ++calls;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < min_seconds);
  return elapsed / calls;
}

PeakMeasurement measure_gemm(int m, int n, int k, double min_seconds) {
  std::vector<float> a(static_cast<size_t>(m) * k, 0.5f), b(static_cast<size_t>(k) * n, 0.25f),
      c(static_cast<size_t>(m) * n);
  const double flops = 2.0 * m * n * k;
  double openblas = seconds_per_call(
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f,
                    c.data(), n);
      },
      min_seconds);
  using dnnl::memory;
  memory::desc a_md({m, k}, memory::data_type::f32, memory::format_tag::ab);
  memory::desc b_md({k, n}, memory::data_type::f32, memory::format_tag::ab);
  memory::desc c_md({m, n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::matmul matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), onednn_engine()));
  memory am(a_md, onednn_engine(), a.data()), bm(b_md, onednn_engine(), b.data()),
      cm(c_md, onednn_engine(), c.data());
  double onednn = seconds_per_call(
      [&] {
        matmul.execute(onednn_stream(), {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
        onednn_stream().wait();
      },
      min_seconds);
  return {flops / openblas / 1e9, flops / onednn / 1e9};
}

PeakMeasurement measure_fp32_peak(int size, double min_seconds) {
  return measure_gemm(size, size, size, min_seconds);
}

}  // namespace qforge::kernels
