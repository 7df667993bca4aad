#include "core/threading.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "core/error.h"

extern "C" void openblas_set_num_threads(int);

namespace qforge {

namespace {
int thread_count = 0;
std::once_flag initialized;

void apply(int count) {
  thread_count = count;
  omp_set_num_threads(count);
  openblas_set_num_threads(count);
}

void initialize_from_environment() {
  std::call_once(initialized, [] {
    int count = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* text = std::getenv("QFORGE_THREADS"); text && *text) {
      char* end = nullptr;
      long parsed = std::strtol(text, &end, 10);
      QF_CHECK(*end == '\0' && parsed >= 1 && parsed <= 1024,
               "QFORGE_THREADS: expected a thread count between 1 and 1024, got \"", text, "\"");
      count = static_cast<int>(parsed);
    }
    apply(count < 1 ? 1 : count);
  });
}
}  // namespace

void set_num_threads(int count) {
  QF_CHECK(count >= 1, "set_num_threads: expected at least 1 thread, got ", count);
  initialize_from_environment();
  apply(count);
}

void read_threads_at_start() noexcept {
  try {
    initialize_from_environment();
  } catch (...) {  // NOLINT(bugprone-empty-catch): the first num_threads() reports it again
  }
}

int num_threads() {
  initialize_from_environment();
  return thread_count;
}

void parallel_row_blocks(int64_t rows, int64_t work_per_row,
                         const std::function<void(const RowBlock&)>& block) {
  if (rows <= 0) return;
  const int64_t threads =
      std::clamp<int64_t>(std::min(rows * work_per_row / kParallelGrain, rows), 1, num_threads());
  if (threads == 1) return block({0, rows, 0, 1});
#pragma omp parallel num_threads(static_cast <int>(threads))
  {
    const int parts = omp_get_num_threads(), part = omp_get_thread_num();
    const int64_t first = rows * part / parts;
    block({first, rows * (part + 1) / parts - first, part, parts});
  }
}

}  // namespace qforge
