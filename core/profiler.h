// Note [Op profile]
// ~~~~~~~~~~~~~~~~~
// Where a training step's time goes, per op: while an OpProfiler is alive on this thread,
// every ProfileScope opened on the thread adds to the entry of its key (phase, op, shape)
// one call, its exclusive seconds (its time minus that of the scopes nested in it) and the
// floating-point operations counted inside it (count_multiply_adds, core/flop_counter.h) and
// not inside a nested scope. The ops open scopes around their kernels (conv2d forward,
// backward-data and backward-weights; matmul; batch norm; pooling; the elementwise ops;
// the losses; the LSTM), backward opens one per node it runs, and a caller opens the outer
// ones (a step's forward, the optimizer), so their exclusive time is what no op claimed:
// the glue between ops, the autograd engine, allocation. The shape of a key is built only
// while a profiler is alive; without one a scope costs one thread-local load.
// `qforge bench --json` reports it for fp32 training and inference (train/benchmark.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace qforge {

class ProfileScope;

class OpProfiler {
 public:
  struct Entry {
    std::string phase, op, shape;
    int64_t calls = 0;
    double seconds = 0, flops = 0;  // exclusive
  };

  OpProfiler();
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  // In the order each key was first seen.
  const std::vector<Entry>& entries() const { return entries_; }
  // Whether a profiler is alive on this thread.
  static bool active();

 private:
  friend class ProfileScope;
  friend void count_profiled_flops(double flops);
  std::size_t entry(const char* phase, const char* op, std::string shape);

  std::vector<Entry> entries_;
  ProfileScope* innermost_ = nullptr;
  OpProfiler* previous_;
};

class ProfileScope {
 public:
  // `describe` (a callable returning std::string: the shape the time belongs to) runs only
  // while a profiler is alive.
  template <typename Describe>
  ProfileScope(const char* phase, const char* op, Describe describe) {
    if (OpProfiler::active()) open(phase, op, describe());
  }
  ProfileScope(const char* phase, const char* op) {
    if (OpProfiler::active()) open(phase, op, std::string());
  }
  ~ProfileScope() {
    if (profiler_ != nullptr) close();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  friend void count_profiled_flops(double flops);
  void open(const char* phase, const char* op, std::string shape);
  void close();

  OpProfiler* profiler_ = nullptr;
  ProfileScope* outer_ = nullptr;
  std::size_t entry_ = 0;
  std::chrono::steady_clock::time_point start_;
  double nested_seconds_ = 0;
};

// Called by count_multiply_adds: the flops go to the innermost open scope, if any.
void count_profiled_flops(double flops);

}  // namespace qforge
