// The thread count — the one piece of global mutable state (STYLE habit 7).
// One number drives OpenMP (our loops and oneDNN, which uses the OpenMP runtime) and
// OpenBLAS. Default: QFORGE_THREADS if set, else every core.
#pragma once

#include <cstdint>

namespace qforge {

void set_num_threads(int count);
int num_threads();

// Below this many elements a loop runs on one thread: forking costs more.
inline constexpr int64_t kParallelGrain = 1 << 15;

}  // namespace qforge
