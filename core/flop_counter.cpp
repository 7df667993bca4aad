#include "core/flop_counter.h"

#include "core/profiler.h"

namespace qforge {

namespace {
thread_local FlopCounter* active = nullptr;
}

FlopCounter::FlopCounter() : previous_(active) { active = this; }
FlopCounter::~FlopCounter() { active = previous_; }

void count_multiply_adds(double multiply_adds) {
  for (FlopCounter* counter = active; counter; counter = counter->previous_)
    counter->flops_ += 2 * multiply_adds;
  count_profiled_flops(2 * multiply_adds);
}

}  // namespace qforge
