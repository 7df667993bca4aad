#include "core/threading.h"

#include <omp.h>

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

}  // namespace qforge
