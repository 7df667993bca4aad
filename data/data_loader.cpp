#include "data/data_loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/random.h"

namespace qforge::data {

namespace {
// A generator for (seed, epoch, stream): independent streams without shared state.
Generator derived_generator(uint64_t seed, int64_t epoch, int64_t stream) {
  uint64_t mixed = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) * 0xBF58476D1CE4E5B9ull +
                   static_cast<uint64_t>(stream) * 0x94D049BB133111EBull;
  return Generator(mixed ^ (mixed >> 31));
}
}  // namespace

DataLoader::DataLoader(const Dataset& dataset, const LoaderOptions& options)
    : dataset_(dataset), options_(options), order_(dataset.size()) {
  QF_CHECK(options.batch_size >= 1, "data loader: batch_size must be >= 1, got ", options.batch_size);
  QF_CHECK(dataset.size() > 0, "data loader: the dataset is empty");
  QF_CHECK(options.augmentation.crop_padding >= 0, "data loader: crop_padding must be >= 0");
  QF_CHECK(options.shards >= 1 && options.shard >= 0 && options.shard < options.shards, "data loader: part ",
           options.shard, " of ", options.shards, " does not exist");
  std::iota(order_.begin(), order_.end(), 0);
}

DataLoader::~DataLoader() {
  if (pending_.valid()) pending_.wait();
}

int64_t DataLoader::batches_per_epoch() const {
  const int64_t n = dataset_.size(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::start_epoch(int64_t epoch) {
  if (pending_.valid()) pending_.wait();
  epoch_ = epoch;
  next_batch_ = 0;
  std::iota(order_.begin(), order_.end(), 0);
  if (options_.shuffle) {  // Fisher–Yates with the epoch's generator
    Generator generator = derived_generator(options_.seed, epoch, -1);
    for (int64_t i = static_cast<int64_t>(order_.size()) - 1; i > 0; --i)
      std::swap(order_[i], order_[generator.below(i + 1)]);
  }
  prefetch(0);
}

void DataLoader::prefetch(int64_t batch_index) {
  if (batch_index >= batches_per_epoch()) return;
  pending_ = std::async(std::launch::async, [this, batch_index] { return make_batch(batch_index); });
}

std::optional<Batch> DataLoader::next() {
  if (!pending_.valid()) return std::nullopt;
  Batch batch = pending_.get();
  prefetch(++next_batch_);
  return batch;
}

Batch DataLoader::make_batch(int64_t batch_index) const {
  const int64_t start = batch_index * options_.batch_size;
  const int64_t count = std::min(options_.batch_size, dataset_.size() - start);
  const int64_t first = count * options_.shard / options_.shards,
                last = count * (options_.shard + 1) / options_.shards;  // this part's rows
  const Shape& shape = dataset_.images.shape();
  const int64_t channels = shape[1], height = shape[2], width = shape[3], image = channels * height * width;
  Batch batch{Tensor::empty({last - first, channels, height, width}),
              Tensor::empty({last - first}, DType::s32)};
  const Augmentation& augment = options_.augmentation;
  const bool is_augmenting = augment.crop_padding > 0 || augment.horizontal_flip;
  Generator generator = derived_generator(options_.seed, epoch_, batch_index);
  // Raw pixel -> normalized float, through a 256-entry table.
  float lookup[256];
  for (int v = 0; v < 256; ++v) lookup[v] = dataset_.normalize(static_cast<uint8_t>(v));
  const uint8_t* source_images = dataset_.images.data_as<uint8_t>();
  float* images = batch.images.data();
  for (int64_t i = 0; i < count; ++i) {
    if ((i < first || i >= last) && !is_augmenting) continue;
    const int64_t index = order_[start + i];
    const uint8_t* source = source_images + index * image;
    float* target = images + (i - first) * image;
    if (i >= first && i < last)
      batch.labels.data_as<int32_t>()[i - first] = dataset_.labels.data_as<int32_t>()[index];
    if (!is_augmenting) {
      for (int64_t p = 0; p < image; ++p) target[p] = lookup[source[p]];
      continue;
    }
    // Crop offset in [-padding, padding]; pixels from outside the image are black (raw 0).
    const int64_t pad = augment.crop_padding;
    const int64_t dy = pad ? static_cast<int64_t>(generator.below(2 * pad + 1)) - pad : 0;
    const int64_t dx = pad ? static_cast<int64_t>(generator.below(2 * pad + 1)) - pad : 0;
    const bool flip = augment.horizontal_flip && generator.below(2) == 1;
    if (i < first || i >= last) continue;  // another part's row: its draws made, nothing written
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t y = 0; y < height; ++y)
        for (int64_t x = 0; x < width; ++x) {
          const int64_t sy = y + dy, sx = (flip ? width - 1 - x : x) + dx;
          const bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
          target[(c * height + y) * width + x] = lookup[inside ? source[(c * height + sy) * width + sx] : 0];
        }
  }
  return batch;
}

}  // namespace qforge::data
