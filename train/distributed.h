// Data parallelism over MPI (PyTorch's DistributedDataParallel; Note [Data parallelism]).
// The process group is MPI_COMM_WORLD when qforge runs under `mpirun` or `srun`, else one
// process, and then nothing here touches MPI: a plain run behaves as if this file did not
// exist. Built without MPI (no libopenmpi-dev at configure time), only the one-process
// group exists and a launch under mpirun with several ranks is refused by name.
// Left out: several groups, GPU transports.
#pragma once

#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops/norm.h"
#include "core/tensor.h"
#include "nn/module.h"
#include "quant/observer.h"

namespace qforge::train {

// Note [Data parallelism]
// ~~~~~~~~~~~~~~~~~~~~~~~
// Every rank holds the whole model and reads the same shuffled batches (the loader's
// order depends on seed and epoch only); rank r of N trains on rows [B·r/N, B·(r+1)/N) of
// each global batch of B images and scales its mean loss by its share of the rows, so the
// summed gradient is the gradient of the global batch's mean loss — what one process
// computes, up to the order of the float additions. The gradients (and the batch's loss
// sum, which every rank then checks for NaN together) are summed by MPI_Allreduce over
// flat buckets in parameter order, the same on every rank, so every rank steps its
// optimizer identically and the ranks' weights stay equal bit for bit. Buffers (batch-norm
// running statistics, observers) are broadcast from rank 0 before every evaluation and
// every write, as DDP's broadcast_buffers does, so rank 0's view is the model's. Only rank
// 0 writes files; evaluation is sharded over the ranks and its sums reduced.
// QAT: each fake quantizer's observer reduces every batch's statistics over the ranks inside
// forward (quant::StatisticsReducer, GroupReducer below), so every rank observes the whole
// batch and forward must run on every rank: a last batch smaller than N is left out.
// Studies run each planned run on one rank (UseGroup(solo())), in rounds of N.
// The world is process-global state, like the thread count (core/threading.h): MPI allows
// one initialization per process.
class ProcessGroup {
 public:
  // MPI_COMM_WORLD under mpirun/srun (initialized on first use), else a group of one.
  static ProcessGroup& world();
  // A group of this process alone, whatever launched it (a test's one-process twin).
  static const ProcessGroup& solo();
  // The group stages train with (fit, start_run): world(), unless a UseGroup says otherwise
  // — a distributed study runs each of its runs on one rank, inside UseGroup(solo()).
  static const ProcessGroup& current();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  bool is_distributed() const { return size_ > 1; }

  // In place, across every rank (no-ops in a group of one).
  void allreduce_sum(float* data, int64_t count) const;
  void allreduce_sum(double* data, int64_t count) const;
  void allreduce_min(float* data, int64_t count) const;
  void allreduce_max(float* data, int64_t count) const;
  void broadcast(void* data, int64_t bytes, int root = 0) const;
  std::vector<std::string> allgather(const std::string& text) const;
  // Ends every rank's process (MPI_Abort) after printing the message with this rank named.
  [[noreturn]] void abort(const std::string& message) const;

  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

 private:
  explicit ProcessGroup(bool join_launched_ranks);
  int rank_ = 0, size_ = 1;
  bool owns_mpi_ = false;
};

// Within its scope, ProcessGroup::current() is `group` (restored after, nested scopes too).
class UseGroup {
 public:
  explicit UseGroup(const ProcessGroup& group);
  ~UseGroup();
  UseGroup(const UseGroup&) = delete;
  UseGroup& operator=(const UseGroup&) = delete;

 private:
  const ProcessGroup* previous_;
};

// An error every rank raises at the same point with the same message (ranks that
// disagree, a command that is not data-parallel, a NaN loss after the allreduce): rank 0
// reports it once and every rank exits cleanly. Any other error ends every rank from the
// rank that raised it (ProcessGroup::abort), as the others may be waiting for it.
class CollectiveError : public Error {
 public:
  using Error::Error;
};
template <typename... Args>
[[noreturn]] void fail_collectively(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  throw CollectiveError(out.str());
}

// The observers' statistics combined over a group's ranks (quant::StatisticsReducer).
class GroupReducer : public quant::StatisticsReducer {
 public:
  explicit GroupReducer(const ProcessGroup& group) : group_(group) {}
  void min(std::vector<float>& values) const override;
  void max(std::vector<float>& values) const override;
  void sum(std::vector<float>& values) const override;

 private:
  const ProcessGroup& group_;
};

// SyncBatchNorm's sums over a group's ranks (core/ops/norm.h).
class GroupSum : public SumAcrossProcesses {
 public:
  explicit GroupSum(const ProcessGroup& group) : group_(group) {}
  void sum(double* values, int64_t count) const override { group_.allreduce_sum(values, count); }

 private:
  const ProcessGroup& group_;
};

// Rank r's rows of a global batch of `count`: [count·r/N, count·(r+1)/N).
struct Shard {
  int64_t begin = 0, end = 0;
};
Shard shard_of(int64_t count, int rank, int ranks);

// Parameters and buffers from rank 0 to every rank.
void broadcast_state(nn::Module& model, const ProcessGroup& group);
// Buffers only (batch-norm statistics, observers).
void broadcast_buffers(nn::Module& model, const ProcessGroup& group);

struct AllreduceSeconds {
  double waiting = 0, transfer = 0;
};

// Note [Overlapped allreduce]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// As PyTorch's DDP: the parameters are cut into flat buckets of at most `bucket_floats`, in
// reverse parameter order (the last layer's gradients are ready first), the same on every
// rank. During backward the autograd engine reports each parameter whose gradient is final
// (Note [Gradient-ready hooks]); when a bucket's parameters are all ready, and every earlier
// bucket has started, it is packed and its sum started (MPI_Iallreduce), so the sums travel
// while backward computes the earlier layers. Buckets start in index order on every rank —
// MPI requires collectives in the same order everywhere — and each report lets MPI progress
// the ones in flight. After backward, finish() starts what is left (a parameter no gradient
// reached, on a rank without rows or in an unused branch, sends zeros), sums `extra` (the
// batch's loss sum) with the flags saying which parameters have a gradient on some rank,
// waits, and writes the sums into the gradients; a parameter no rank has a gradient for stays
// without one (the optimizer skips it, as one process would). The sums are those of the
// blocking allreduce after backward: the same numbers reach the same reduction.
class GradientBuckets : public GradientReadyHook {
 public:
  GradientBuckets(const std::vector<Tensor>& parameters, const ProcessGroup& group, int64_t bucket_floats);
  ~GradientBuckets() override;
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // Call before each step's backward, and install this as the backward's hook (OnGradientReady).
  void start_step();
  void gradient_ready(const Tensor& leaf) override;
  // After backward (or in its place, on a rank without rows). Returns the seconds spent
  // in the small allreduce (mostly waiting for the slowest rank to finish its backward)
  // and then waiting for the buckets (the transfer backward did not hide).
  AllreduceSeconds finish(std::vector<double>& extra);

  int64_t buckets() const;
  // Of the last step's buckets, how many started while backward was running.
  int64_t started_during_backward() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Refuses ranks that would train different things: compares a digest of each rank's
// config, dataset and qforge build with rank 0's and names the first that differs.
void check_ranks_agree(const std::string& config_text, const Tensor& train_images, const Tensor& train_labels,
                       const ProcessGroup& group);

}  // namespace qforge::train
