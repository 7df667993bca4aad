#include "core/profiler.h"

namespace qforge {

namespace {
thread_local OpProfiler* active_profiler = nullptr;
}

OpProfiler::OpProfiler() : previous_(active_profiler) { active_profiler = this; }
OpProfiler::~OpProfiler() { active_profiler = previous_; }

bool OpProfiler::active() { return active_profiler != nullptr; }

std::size_t OpProfiler::entry(const char* phase, const char* op, std::string shape) {
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].phase == phase && entries_[i].op == op && entries_[i].shape == shape) return i;
  entries_.push_back({.phase = phase, .op = op, .shape = std::move(shape)});
  return entries_.size() - 1;
}

void ProfileScope::open(const char* phase, const char* op, std::string shape) {
  profiler_ = active_profiler;
  entry_ = profiler_->entry(phase, op, std::move(shape));
  outer_ = profiler_->innermost_;
  profiler_->innermost_ = this;
  start_ = std::chrono::steady_clock::now();
}

void ProfileScope::close() {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  OpProfiler::Entry& e = profiler_->entries_[entry_];
  ++e.calls;
  e.seconds += seconds - nested_seconds_;
  if (outer_ != nullptr) outer_->nested_seconds_ += seconds;
  profiler_->innermost_ = outer_;
}

void count_profiled_flops(double flops) {
  if (active_profiler == nullptr || active_profiler->innermost_ == nullptr) return;
  ProfileScope& scope = *active_profiler->innermost_;
  active_profiler->entries_[scope.entry_].flops += flops;
}

}  // namespace qforge
