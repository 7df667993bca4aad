// doctest's main, after reading QFORGE_THREADS (core/threading.h) as the qforge command does
// before anything runs a parallel loop: otherwise OpenMP and oneDNN start with every core and
// the variable is ignored (ctest train_real_data runs shards of one thread each).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "core/threading.h"

int main(int argc, char** argv) {
  qforge::num_threads();
  return doctest::Context(argc, argv).run();
}
