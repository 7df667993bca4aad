// Counts the floating-point operations of GEMM and convolution ops (2 per multiply-add,
// forward and backward) while a FlopCounter is alive on this thread, so a benchmark can
// report achieved GFLOP/s of a whole training step. Counting costs one branch per op.
#pragma once

#include <cstdint>

namespace qforge {

class FlopCounter {
 public:
  FlopCounter();
  ~FlopCounter();
  FlopCounter(const FlopCounter&) = delete;
  FlopCounter& operator=(const FlopCounter&) = delete;
  double flops() const { return flops_; }

 private:
  friend void count_multiply_adds(double multiply_adds);
  double flops_ = 0;
  FlopCounter* previous_;
};

// Called by ops: adds 2·multiply_adds to the active counter, if any.
void count_multiply_adds(double multiply_adds);

}  // namespace qforge
