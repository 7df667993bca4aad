// doctest's main. QFORGE_THREADS needs no call here: core/tensor.cpp applies it as the program
// starts (core/threading.h); ctest's threads_from_environment entry holds it to that.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

int main(int argc, char** argv) { return doctest::Context(argc, argv).run(); }
