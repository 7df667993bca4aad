// DataLoader: turns a Dataset into batches. Per-epoch shuffling and augmentation (random
// crop with zero padding, horizontal flip) draw from generators derived from
// (seed, epoch, batch), so an epoch is the same whatever thread builds it and a resumed
// run sees the same batches. The next batch is assembled on a worker thread while the
// current one trains. The last partial batch is kept unless drop_last.
#pragma once

#include <cstdint>
#include <future>
#include <optional>
#include <vector>

#include "data/dataset.h"

namespace qforge::data {

struct Augmentation {
  int64_t crop_padding = 0;      // pad by this many zeros, then crop back at a random offset
  bool horizontal_flip = false;  // flip with probability 1/2
};

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  Augmentation augmentation;
  // Data parallelism (Note [Data parallelism], train/distributed.h): part `shard` of
  // `shards` gets rows [B·shard/shards, B·(shard+1)/shards) of every batch of B — the batch
  // one process would get, cut the same way for every part; augmentation draws as for the whole.
  int64_t shard = 0, shards = 1;
};

struct Batch {
  Tensor images;  // (B,C,H,W)
  Tensor labels;  // (B) s32
};

class DataLoader {
 public:
  DataLoader(const Dataset& dataset, const LoaderOptions& options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  void start_epoch(int64_t epoch);  // reorders (if shuffling) and starts prefetching
  std::optional<Batch> next();      // nullopt at the end of the epoch
  int64_t batches_per_epoch() const;

 private:
  Batch make_batch(int64_t batch_index) const;
  void prefetch(int64_t batch_index);

  const Dataset& dataset_;
  LoaderOptions options_;
  int64_t epoch_ = 0, next_batch_ = 0;
  std::vector<int64_t> order_;
  std::future<Batch> pending_;
};

}  // namespace qforge::data
