// The thread count: global mutable state (STYLE habit 7), with two others kept small and
// named where they live — oneDNN's engine/stream and primitive cache
// (core/kernels/conv2d_onednn.cpp) and the allocator thresholds set once (Note [Allocator],
// core/tensor.cpp); and the int8 conv's per-thread padding buffer (quant/int8/fast.cpp).
// One number drives OpenMP (our loops and oneDNN, which uses the OpenMP runtime) and
// OpenBLAS. Default: QFORGE_THREADS if set, else every core.
#pragma once

#include <cstdint>

namespace qforge {

void set_num_threads(int count);
int num_threads();
// Applies QFORGE_THREADS (or every core) now. core/tensor.cpp calls it from a static
// initializer, so any program linking qforge gets the variable before anything can open a
// parallel region — its own loops, OpenMP's or oneDNN's — even if it never calls
// num_threads(). A malformed value cannot be reported from there: the first num_threads()
// or set_num_threads() reports it.
void read_threads_at_start() noexcept;

// Below this many elements a loop runs on one thread: forking costs more.
inline constexpr int64_t kParallelGrain = 1 << 15;

}  // namespace qforge
