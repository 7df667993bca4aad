// The thread count: global mutable state (STYLE habit 7), with two others kept small and
// named where they live — oneDNN's engine/stream and primitive cache
// (core/kernels/conv2d_onednn.cpp) and the allocator thresholds set once (Note [Allocator],
// core/tensor.cpp); and the int8 conv's per-thread padding buffer (quant/int8/fast.cpp).
// One number drives OpenMP (our loops and oneDNN, which uses the OpenMP runtime) and
// OpenBLAS. Default: QFORGE_THREADS if set, else every core.
#pragma once

#include <cstdint>
#include <functional>

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

// A block of rows [first, first + count) for thread `part` of `parts`.
struct RowBlock {
  int64_t first, count;
  int part, parts;
};
// Runs block() over disjoint blocks of rows [0, rows) that together cover it, one block per
// thread, for work whose rows need no synchronization — a recurrent layer's batch rows
// through all its steps (Note [LSTM inference], core/ops/rnn.cpp) — or little: a block may
// meet the others at `#pragma omp barrier`, since every thread of the team gets a block,
// never an empty one. One thread per kParallelGrain of work (rows × work_per_row), never
// more threads than rows; with one, block runs on the calling thread outside any parallel
// region, so what it calls may open its own. Inside a block, called code must not open a
// region (oneDNN checks by itself; our loops test omp_in_parallel).
void parallel_row_blocks(int64_t rows, int64_t work_per_row,
                         const std::function<void(const RowBlock&)>& block);

}  // namespace qforge
