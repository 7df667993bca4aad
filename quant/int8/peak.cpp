#include "quant/int8/peak.h"

#include <cstdint>
#include <vector>

#include "core/kernels/peak.h"

namespace qforge::quant::int8 {

double measure_int8_peak_gops(Isa isa, double min_seconds) {
  const int64_t m = 4096, n = 256, k = 1024, rows_per_task = 256;
  // Values do not matter to the time; the rows are bytes, or int16 words for avx2's kernels.
  std::vector<uint8_t> bytes(m * k);
  std::vector<int8_t> w(n * k);
  for (int64_t i = 0; i < m * k; ++i) bytes[i] = static_cast<uint8_t>(i * 7 % 251);
  for (int64_t i = 0; i < n * k; ++i) w[i] = static_cast<int8_t>(i * 13 % 255 - 127);
  const std::vector<int16_t> words(bytes.begin(), bytes.end());
  const PackedWeights packed(w.data(), n, 1, k, isa);
  std::vector<int64_t> row_offsets(m);
  for (int64_t i = 0; i < m; ++i) row_offsets[i] = i * k;
  const int64_t taps[1] = {0};
  const void* base = isa == Isa::avx2 ? static_cast<const void*>(words.data()) : bytes.data();
  std::vector<int32_t> c(m * n);
  const double seconds = kernels::seconds_per_call(
      [&] {
#pragma omp parallel for schedule(static)
        for (int64_t first = 0; first < m; first += rows_per_task)
          packed.multiply(c.data() + first * n, n, {base, row_offsets.data() + first, taps}, rows_per_task);
      },
      min_seconds);
  return 2.0 * static_cast<double>(m * n * k) / seconds / 1e9;
}

}  // namespace qforge::quant::int8
