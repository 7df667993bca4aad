// This machine's int8 peak: the GOP/s (2 per multiply-add) of a compute-bound GEMM —
// m 4096 × n 256 × k 1024 through the packed kernel of `isa`, rows split across every thread.
// The denominator of "fraction of the int8 peak" in `qforge bench` and bench_kernels.
#pragma once

#include "quant/int8/gemm.h"

namespace qforge::quant::int8 {

double measure_int8_peak_gops(Isa isa, double min_seconds);

}  // namespace qforge::quant::int8
