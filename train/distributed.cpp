#include "train/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "core/file_io.h"
#include "core/serialize.h"
#include "core/threading.h"

#ifdef QFORGE_HAVE_MPI
#include <mpi.h>
#endif

namespace qforge::train {

namespace {

// The ranks mpirun (OpenMPI) or srun (Slurm, PMI/PMIx) says this process belongs to; 1 when
// it was started by hand.
int launched_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "SLURM_NTASKS"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && std::atoi(value) > 0) return std::atoi(value);
  }
  return 1;
}

int launched_local_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && std::atoi(value) > 0) return std::atoi(value);
  }
  return 1;
}

}  // namespace

ProcessGroup& ProcessGroup::world() {
  static ProcessGroup group(true);
  return group;
}

const ProcessGroup& ProcessGroup::solo() {
  static const ProcessGroup group(false);
  return group;
}

namespace {
const ProcessGroup* current_group = nullptr;  // null: world()
}  // namespace

const ProcessGroup& ProcessGroup::current() { return current_group ? *current_group : world(); }

UseGroup::UseGroup(const ProcessGroup& group) : previous_(current_group) { current_group = &group; }
UseGroup::~UseGroup() { current_group = previous_; }

ProcessGroup::ProcessGroup(bool join_launched_ranks) {
  const int ranks = join_launched_ranks ? launched_ranks() : 1;
  if (ranks <= 1) return;
#ifdef QFORGE_HAVE_MPI
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    // Only the main thread calls MPI (the data loader's thread and OpenMP's never do).
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    owns_mpi_ = true;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  // Ranks sharing a machine share its cores: without QFORGE_THREADS each takes its part,
  // not all of them (two OpenMP programs on the same cores slow each other far more than 2x).
  const int local = launched_local_ranks();
  if (local > 1 && std::getenv("QFORGE_THREADS") == nullptr)
    set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local));
#else
  QF_FAIL("qforge was started as one of ", ranks,
          " MPI ranks, but was built without MPI (libopenmpi-dev was missing when CMake configured "
          "it); install it (scripts/install-deps) and rebuild, or run one process without mpirun");
#endif
}

ProcessGroup::~ProcessGroup() {
#ifdef QFORGE_HAVE_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_mpi_ && !finalized) MPI_Finalize();
#endif
}

#ifdef QFORGE_HAVE_MPI
namespace {
// MPI counts are int: long buffers go in pieces.
template <typename T>
void allreduce_in_pieces(T* data, int64_t count, MPI_Datatype type) {
  constexpr int64_t kPiece = int64_t{1} << 30;
  for (int64_t at = 0; at < count; at += kPiece)
    MPI_Allreduce(MPI_IN_PLACE, data + at, static_cast<int>(std::min(kPiece, count - at)), type, MPI_SUM,
                  MPI_COMM_WORLD);
}
}  // namespace
#endif

void ProcessGroup::allreduce_sum(float* data, int64_t count) const {
#ifdef QFORGE_HAVE_MPI
  if (is_distributed()) allreduce_in_pieces(data, count, MPI_FLOAT);
#endif
}

void ProcessGroup::allreduce_sum(double* data, int64_t count) const {
#ifdef QFORGE_HAVE_MPI
  if (is_distributed()) allreduce_in_pieces(data, count, MPI_DOUBLE);
#endif
}

void ProcessGroup::allreduce_min(float* data, int64_t count) const {
#ifdef QFORGE_HAVE_MPI
  if (is_distributed())
    MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
#endif
}

void ProcessGroup::allreduce_max(float* data, int64_t count) const {
#ifdef QFORGE_HAVE_MPI
  if (is_distributed())
    MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
#endif
}

void GroupReducer::min(std::vector<float>& values) const {
  group_.allreduce_min(values.data(), static_cast<int64_t>(values.size()));
}
void GroupReducer::max(std::vector<float>& values) const {
  group_.allreduce_max(values.data(), static_cast<int64_t>(values.size()));
}
void GroupReducer::sum(std::vector<float>& values) const {
  group_.allreduce_sum(values.data(), static_cast<int64_t>(values.size()));
}

void ProcessGroup::broadcast(void* data, int64_t bytes, int root) const {
#ifdef QFORGE_HAVE_MPI
  if (!is_distributed()) return;
  constexpr int64_t kPiece = int64_t{1} << 30;
  auto* at = static_cast<char*>(data);
  for (int64_t done = 0; done < bytes; done += kPiece)
    MPI_Bcast(at + done, static_cast<int>(std::min(kPiece, bytes - done)), MPI_BYTE, root, MPI_COMM_WORLD);
#endif
}

std::vector<std::string> ProcessGroup::allgather(const std::string& text) const {
  if (!is_distributed()) return {text};
#ifdef QFORGE_HAVE_MPI
  const int length = static_cast<int>(text.size());
  std::vector<int> lengths(static_cast<std::size_t>(size_)), offsets(static_cast<std::size_t>(size_));
  MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD);
  int total = 0;
  for (int r = 0; r < size_; ++r) offsets[static_cast<std::size_t>(r)] = total, total += lengths[r];
  std::string all(static_cast<std::size_t>(total), '\0');
  MPI_Allgatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
                 MPI_COMM_WORLD);
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(size_));
  for (int r = 0; r < size_; ++r)
    out.push_back(all.substr(static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(lengths[r])));
  return out;
#else
  return {text};
#endif
}

void ProcessGroup::abort(const std::string& message) const {
  std::fprintf(stderr, "qforge: error on rank %d of %d: %s\n", rank_, size_, message.c_str());
  std::fflush(stderr);
#ifdef QFORGE_HAVE_MPI
  if (is_distributed()) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
  std::exit(1);
}

Shard shard_of(int64_t count, int rank, int ranks) {
  return {count * rank / ranks, count * (rank + 1) / ranks};
}

namespace {
void broadcast_tensors(nn::Module& model, const nn::Module::NamedTensors& tensors,
                       const ProcessGroup& group) {
  if (!group.is_distributed()) return;
  for (const auto& [name, tensor] : tensors)
    group.broadcast(tensor.bytes(), static_cast<int64_t>(tensor.size_bytes()));
  for (auto& [name, module] : model.named_modules()) module->state_loaded();
}
}  // namespace

void broadcast_state(nn::Module& model, const ProcessGroup& group) {
  broadcast_tensors(model, model.named_parameters(), group);
  broadcast_tensors(model, model.named_buffers(), group);
}

void broadcast_buffers(nn::Module& model, const ProcessGroup& group) {
  broadcast_tensors(model, model.named_buffers(), group);
}

struct GradientBuckets::State {
  struct Bucket {
    std::vector<std::size_t> parameters;  // indices, in reverse parameter order
    std::vector<float> sums;
    std::size_t ready = 0;
#ifdef QFORGE_HAVE_MPI
    MPI_Request request = MPI_REQUEST_NULL;
#endif
  };
  std::vector<Tensor> parameters;
  const ProcessGroup* group = nullptr;
  std::unordered_map<const TensorImpl*, std::size_t> bucket_of;  // parameter -> its bucket
  std::vector<Bucket> buckets;
  std::size_t next = 0;  // the first bucket not started
  int64_t started_early = 0;
  bool in_backward = false;

  // Starts, in index order, every bucket whose parameters are all ready.
  void start_ready() {
    while (next < buckets.size() && buckets[next].ready == buckets[next].parameters.size())
      start(buckets[next++]);
  }
  void start(Bucket& bucket) {
    std::size_t at = 0;
    for (const std::size_t i : bucket.parameters) {
      const Tensor grad = parameters[i].grad();
      const auto count = static_cast<std::size_t>(parameters[i].numel());
      if (grad.defined())
        std::copy_n(grad.data(), count, bucket.sums.data() + at);
      else
        std::fill_n(bucket.sums.data() + at, count, 0.0f);
      at += count;
    }
    if (in_backward) ++started_early;
#ifdef QFORGE_HAVE_MPI
    MPI_Iallreduce(MPI_IN_PLACE, bucket.sums.data(), static_cast<int>(bucket.sums.size()), MPI_FLOAT, MPI_SUM,
                   MPI_COMM_WORLD, &bucket.request);
#endif
  }
  // Lets MPI move the started sums on (OpenMPI progresses them only inside MPI calls).
  void progress() {
#ifdef QFORGE_HAVE_MPI
    for (std::size_t b = 0; b < next; ++b) {
      if (buckets[b].request == MPI_REQUEST_NULL) continue;
      int done = 0;
      MPI_Test(&buckets[b].request, &done, MPI_STATUS_IGNORE);
    }
#endif
  }
};

GradientBuckets::GradientBuckets(const std::vector<Tensor>& parameters, const ProcessGroup& group,
                                 int64_t bucket_floats)
    : state_(std::make_unique<State>()) {
  QF_CHECK(bucket_floats > 0 && bucket_floats <= (int64_t{1} << 30), "allreduce buckets: ", bucket_floats,
           " floats; expected 1 to 2^30");
  State& s = *state_;
  s.parameters = parameters;
  s.group = &group;
  if (!group.is_distributed()) return;
  int64_t filled = 0;
  for (std::size_t k = parameters.size(); k-- > 0;) {
    const int64_t count = parameters[k].numel();
    QF_CHECK(count < (int64_t{1} << 31), "allreduce buckets: a parameter of ", count,
             " values is more than one MPI message can carry");
    if (s.buckets.empty() || (filled > 0 && filled + count > bucket_floats))
      s.buckets.emplace_back(), filled = 0;
    s.buckets.back().parameters.push_back(k);
    filled += count;
    s.bucket_of[parameters[k].impl()] = s.buckets.size() - 1;
  }
  for (State::Bucket& bucket : s.buckets) {
    int64_t floats = 0;
    for (const std::size_t i : bucket.parameters) floats += parameters[i].numel();
    bucket.sums.resize(static_cast<std::size_t>(floats));
  }
}

GradientBuckets::~GradientBuckets() = default;

void GradientBuckets::start_step() {
  State& s = *state_;
  for (State::Bucket& bucket : s.buckets) bucket.ready = 0;
  s.next = 0;
  s.started_early = 0;
  s.in_backward = true;
}

void GradientBuckets::gradient_ready(const Tensor& leaf) {
  State& s = *state_;
  const auto found = s.bucket_of.find(leaf.impl());
  if (found == s.bucket_of.end() || !s.in_backward) return;  // not a parameter this trains
  ++s.buckets[found->second].ready;
  s.start_ready();
  s.progress();
}

AllreduceSeconds GradientBuckets::finish(std::vector<double>& extra) {
  using Clock = std::chrono::steady_clock;
  State& s = *state_;
  AllreduceSeconds seconds;
  s.in_backward = false;
  if (!s.group->is_distributed()) return seconds;
  const Clock::time_point start = Clock::now();
  while (s.next < s.buckets.size()) s.start(s.buckets[s.next++]);
  std::vector<double> flags(s.parameters.size());
  for (std::size_t i = 0; i < s.parameters.size(); ++i) flags[i] = s.parameters[i].grad().defined() ? 1 : 0;
  flags.insert(flags.end(), extra.begin(), extra.end());
  s.group->allreduce_sum(flags.data(), static_cast<int64_t>(flags.size()));
  std::copy(flags.begin() + static_cast<std::ptrdiff_t>(s.parameters.size()), flags.end(), extra.begin());
  const Clock::time_point flags_done = Clock::now();
  seconds.waiting = std::chrono::duration<double>(flags_done - start).count();
  for (State::Bucket& bucket : s.buckets) {
#ifdef QFORGE_HAVE_MPI
    MPI_Wait(&bucket.request, MPI_STATUS_IGNORE);
#endif
    std::size_t at = 0;
    for (const std::size_t i : bucket.parameters) {
      Tensor parameter = s.parameters[i];
      const auto count = static_cast<std::size_t>(parameter.numel());
      if (flags[i] > 0) {
        if (!parameter.grad().defined()) parameter.set_grad(Tensor::zeros(parameter.shape()));
        std::copy_n(bucket.sums.data() + at, count, parameter.grad().data());
      }
      at += count;
    }
  }
  seconds.transfer = std::chrono::duration<double>(Clock::now() - flags_done).count();
  return seconds;
}

int64_t GradientBuckets::buckets() const { return static_cast<int64_t>(state_->buckets.size()); }
int64_t GradientBuckets::started_during_backward() const { return state_->started_early; }

void check_ranks_agree(const std::string& config_text, const Tensor& train_images, const Tensor& train_labels,
                       const ProcessGroup& group) {
  if (!group.is_distributed()) return;
  const uint32_t images = crc32_of(train_images.bytes(), train_images.size_bytes());
  const uint32_t labels = crc32_of(train_labels.bytes(), train_labels.size_bytes());
  // The build: this executable's own bytes.
  const std::string executable = read_file("/proc/self/exe");
  char digest[64];
  std::snprintf(digest, sizeof digest, "%08x|%08x %08x|%08x",
                crc32_of(config_text.data(), config_text.size()), images, labels,
                crc32_of(executable.data(), executable.size()));
  const std::vector<std::string> all = group.allgather(digest);
  const char* what[] = {"config (after --set)", "training data", "qforge build"};
  for (int r = 1; r < group.size(); ++r) {
    const std::string& mine = all[static_cast<std::size_t>(r)];
    if (mine == all[0]) continue;
    const std::size_t bar = all[0].find('|'), second = all[0].find('|', bar + 1);
    const int field = mine.substr(0, bar) != all[0].substr(0, bar)                         ? 0
                      : mine.substr(bar, second - bar) != all[0].substr(bar, second - bar) ? 1
                                                                                           : 2;
    fail_collectively("rank ", r, "'s ", what[field], " differs from rank 0's (digests ", mine, " vs ",
                      all[0], "): every rank must run the same config on the same data with the same qforge");
  }
}

}  // namespace qforge::train
