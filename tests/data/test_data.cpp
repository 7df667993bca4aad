#include <doctest/doctest.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <set>

#include "core/file_io.h"
#include "data/data_loader.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "tests/temp_folder.h"

using namespace qforge;
using namespace qforge::data;

namespace {
std::string temp_folder(const std::string& name) { return testing::fresh_temp_folder("data_" + name); }

// A tiny dataset: image i is filled with the value i, label i % 10.
void write_tiny_dataset(const std::string& folder, int64_t count) {
  std::vector<uint8_t> images(count * 4 * 4), labels(count);
  for (int64_t i = 0; i < count; ++i) {
    std::fill_n(images.begin() + i * 16, 16, static_cast<uint8_t>(i));
    labels[i] = static_cast<uint8_t>(i % 10);
  }
  write_idx(folder + "/train-images-idx3-ubyte", {count, 4, 4}, images);
  write_idx(folder + "/train-labels-idx1-ubyte", {count}, labels);
}
}  // namespace

TEST_CASE("IDX round trip, plain and gzip") {
  const std::string folder = temp_folder("idx");
  std::vector<uint8_t> values{1, 2, 3, 4, 5, 6};
  write_idx(folder + "/a", {2, 3}, values);
  IdxArray plain = read_idx(folder + "/a");
  CHECK(plain.dims == std::vector<int64_t>{2, 3});
  CHECK(plain.values == values);
  std::string bytes = read_file(folder + "/a");
  gzFile gz = gzopen((folder + "/a.gz").c_str(), "wb");
  gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(gz);
  CHECK(read_idx(folder + "/a.gz").values == values);
}

TEST_CASE("IDX reader rejects truncated, corrupt and oversized files") {
  const std::string folder = temp_folder("bad");
  std::vector<uint8_t> values(100, 7);
  write_idx(folder + "/ok", {10, 10}, values);
  std::string bytes = read_file(folder + "/ok");
  write_file_atomically(folder + "/truncated", bytes.substr(0, bytes.size() - 1));
  CHECK_THROWS_WITH_AS(
      read_idx(folder + "/truncated"),
      (folder + "/truncated: truncated: the header promises 100 values, the file holds 99").c_str(), Error);
  write_file_atomically(folder + "/short_header", bytes.substr(0, 6));
  CHECK_THROWS_WITH_AS(read_idx(folder + "/short_header"), doctest::Contains("truncated IDX header"), Error);
  std::string bad_magic = bytes;
  bad_magic[0] = 'P';
  write_file_atomically(folder + "/magic", bad_magic);
  CHECK_THROWS_WITH_AS(read_idx(folder + "/magic"), doctest::Contains("not an IDX file"), Error);
  std::string wrong_type = bytes;
  wrong_type[2] = 0x0D;
  write_file_atomically(folder + "/type", wrong_type);
  CHECK_THROWS_WITH_AS(read_idx(folder + "/type"), doctest::Contains("expected 0x08 (uint8)"), Error);
  write_file_atomically(folder + "/long", bytes + "x");
  CHECK_THROWS_WITH_AS(read_idx(folder + "/long"), doctest::Contains("trailing bytes"), Error);
  CHECK_THROWS_WITH_AS(read_idx(folder + "/missing"), doctest::Contains("IDX file not found"), Error);
  // A gzip stream cut in the middle.
  gzFile gz = gzopen((folder + "/cut.gz").c_str(), "wb");
  gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(gz);
  std::string compressed = read_file(folder + "/cut.gz");
  write_file_atomically(folder + "/cut.gz", compressed.substr(0, compressed.size() / 2));
  CHECK_THROWS_AS(read_idx(folder + "/cut.gz"), Error);
  // A gzip stream whose data is intact but whose CRC-32 trailer is wrong (gzip -t fails):
  // zlib reports it only at the end of the stream, after the last value was read.
  std::string bad_crc = compressed;
  bad_crc[bad_crc.size() - 8] = static_cast<char>(bad_crc[bad_crc.size() - 8] ^ 0x5a);
  write_file_atomically(folder + "/crc.gz", bad_crc);
  CHECK_THROWS_WITH_AS(read_idx(folder + "/crc.gz"),
                       doctest::Contains("corrupt or truncated compressed data"), Error);
  // A 116-byte file whose header claims 1024^3 = 2^30 values: refused before any allocation.
  std::string huge{'\0', '\0', '\x08', '\x03', '\0', '\0', '\x04', '\0',
                   '\0', '\0', '\x04', '\0',   '\0', '\0', '\x04', '\0'};
  huge.resize(116, '\x01');
  write_file_atomically(folder + "/huge", huge);
  CHECK_THROWS_WITH_AS(read_idx(folder + "/huge"),
                       doctest::Contains("more than a file of 116 bytes can hold"), Error);
  // Extents whose product passes 2^34 (2^18·2^12·2^12): refused before the product can overflow.
  std::string wide = huge;
  wide[5] = '\x04', wide[6] = '\0', wide[10] = '\x10', wide[14] = '\x10';
  write_file_atomically(folder + "/wide", wide);
  CHECK_THROWS_WITH_AS(read_idx(folder + "/wide"), doctest::Contains("multiply past 2^34"), Error);
}

TEST_CASE("datasets check that images and labels agree") {
  const std::string folder = temp_folder("mismatch");
  write_tiny_dataset(folder, 12);
  write_idx(folder + "/train-labels-idx1-ubyte", {11}, std::vector<uint8_t>(11));
  CHECK_THROWS_WITH_AS(load_idx_folder(folder, Split::train, {}), doctest::Contains("holds 12 images but"),
                       Error);
  CHECK_THROWS_WITH_AS(load_idx_folder(folder, Split::test, {}),
                       doctest::Contains("missing t10k-images-idx3-ubyte"), Error);
  // A label file of rank 3 (it once reached vector::_M_default_append): named, with its rank.
  write_idx(folder + "/train-labels-idx1-ubyte", {12, 1, 1}, std::vector<uint8_t>(12));
  CHECK_THROWS_WITH_AS(load_idx_folder(folder, Split::train, {}),
                       doctest::Contains("train-labels-idx1-ubyte: expected 1 dimension (N), got 3"), Error);
}

TEST_CASE("data loader: every sample once per epoch, partial last batch, seeded shuffle") {
  const std::string folder = temp_folder("loader");
  write_tiny_dataset(folder, 23);
  Dataset dataset = load_idx_folder(folder, Split::train, {0.0f, 1.0f / 255.0f});  // pixel value = index
  CHECK(dataset.images.shape() == Shape{23, 1, 4, 4});
  DataLoader loader(dataset, {.batch_size = 5, .shuffle = true, .seed = 3});
  CHECK(loader.batches_per_epoch() == 5);
  auto epoch_order = [&](int64_t epoch) {
    loader.start_epoch(epoch);
    std::vector<int> order;
    while (auto batch = loader.next()) {
      for (int64_t i = 0; i < batch->labels.numel(); ++i) {
        int index = static_cast<int>(std::lround(batch->images.data()[i * 16]));
        CHECK(batch->labels.data_as<int32_t>()[i] == index % 10);
        order.push_back(index);
      }
    }
    return order;
  };
  std::vector<int> first = epoch_order(0);
  CHECK(first.size() == 23);
  CHECK(std::set<int>(first.begin(), first.end()).size() == 23);
  CHECK(epoch_order(0) == first);  // same epoch, same order
  CHECK(epoch_order(1) != first);  // a new epoch reshuffles
  DataLoader dropping(dataset, {.batch_size = 5, .drop_last = true});
  CHECK(dropping.batches_per_epoch() == 4);
}

TEST_CASE("data loader augmentation keeps shapes and is reproducible") {
  const std::string folder = temp_folder("augment");
  write_tiny_dataset(folder, 8);
  Dataset dataset = load_idx_folder(folder, Split::train, {});
  LoaderOptions options{.batch_size = 8,
                        .shuffle = false,
                        .seed = 1,
                        .augmentation = {.crop_padding = 2, .horizontal_flip = true}};
  DataLoader a(dataset, options), b(dataset, options);
  a.start_epoch(0), b.start_epoch(0);
  Batch x = *a.next(), y = *b.next();
  CHECK(x.images.shape() == Shape{8, 1, 4, 4});
  CHECK(x.images.to_vector() == y.images.to_vector());
  bool any_padding = false;
  for (float v : x.images.to_vector()) any_padding |= v == 0.0f;
  CHECK(any_padding);
}

TEST_CASE(
    "data loader parts (data parallelism): the parts of every batch, in rank order, are the whole batch") {
  const std::string folder = temp_folder("parts");
  write_tiny_dataset(folder, 23);
  Dataset dataset = load_idx_folder(folder, Split::train, {});
  for (const bool augmenting : {false, true}) {
    CAPTURE(augmenting);
    LoaderOptions whole_options{.batch_size = 7, .shuffle = true, .seed = 5};
    if (augmenting) whole_options.augmentation = {.crop_padding = 1, .horizontal_flip = true};
    DataLoader whole(dataset, whole_options);
    std::vector<std::unique_ptr<DataLoader>> parts;
    for (int64_t part = 0; part < 3; ++part) {
      LoaderOptions options = whole_options;
      options.shard = part, options.shards = 3;
      parts.push_back(std::make_unique<DataLoader>(dataset, options));
    }
    whole.start_epoch(1);
    for (auto& part : parts) part->start_epoch(1);
    int64_t batches = 0;
    while (auto batch = whole.next()) {
      std::vector<float> images;
      std::vector<int32_t> labels;
      for (auto& part : parts) {
        auto piece = part->next();
        REQUIRE(piece.has_value());
        const std::vector<float> values = piece->images.to_vector();
        images.insert(images.end(), values.begin(), values.end());
        for (int64_t i = 0; i < piece->labels.numel(); ++i)
          labels.push_back(piece->labels.data_as<int32_t>()[i]);
      }
      CHECK(images == batch->images.to_vector());
      CHECK(labels == std::vector<int32_t>(batch->labels.data_as<int32_t>(),
                                           batch->labels.data_as<int32_t>() + batch->labels.numel()));
      ++batches;
    }
    CHECK(batches == 4);  // 7 + 7 + 7 + 2: the last batch gives part 0 no rows (2·1/3 = 0)
    for (auto& part : parts) CHECK_FALSE(part->next().has_value());
  }
  CHECK_THROWS_WITH(DataLoader(dataset, {.shard = 3, .shards = 3}),
                    doctest::Contains("part 3 of 3 does not exist"));
}

TEST_CASE("Fashion-MNIST from the Debian package loads (scripts/install-deps installs it)") {
  REQUIRE(std::filesystem::exists(kFashionMnistFolder));
  Dataset test = load_idx_folder(kFashionMnistFolder, Split::test, {0.2860f, 0.3530f});
  CHECK(test.images.shape() == Shape{10000, 1, 28, 28});
  CHECK(test.num_classes == 10);
}
