// QFORGE_THREADS is applied as the program starts (core/threading.h), before anything can open a
// parallel region. ctest's threads_from_environment runs this suite alone (skipped otherwise:
// --no-skip), in a process of its own with QFORGE_THREADS=3, where nothing has called
// num_threads() yet: the first parallel region must already have 3 threads (OpenMP's default
// would be one per core).
#include <doctest/doctest.h>
#include <omp.h>

#include <cstdlib>
#include <string>

#include "core/threading.h"

TEST_CASE("threads: QFORGE_THREADS holds for the first parallel region, before any num_threads() call" *
          doctest::test_suite("thread-environment") * doctest::skip()) {
  const char* text = std::getenv("QFORGE_THREADS");
  REQUIRE(text != nullptr);
  REQUIRE(std::string(text) == "3");
  int team = 0;
#pragma omp parallel
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  CHECK(team == 3);
  CHECK(qforge::num_threads() == 3);
}
