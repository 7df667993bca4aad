#include "data/dataset.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "data/idx.h"

namespace qforge::data {

namespace {
std::string find_file(const std::string& folder, const std::string& stem) {
  for (const char* suffix : {"", ".gz"}) {
    std::string candidate = folder + "/" + stem + suffix;
    if (std::filesystem::is_regular_file(candidate)) return candidate;
  }
  QF_FAIL(folder, ": missing ", stem, " (or ", stem, ".gz)");
}
}  // namespace

Dataset load_idx_folder(const std::string& folder, Split split, const Normalization& normalization,
                        int64_t limit) {
  QF_CHECK(std::filesystem::is_directory(folder), folder, ": dataset folder not found");
  QF_CHECK(normalization.stddev > 0, folder, ": normalization std must be positive, got ",
           normalization.stddev);
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::string images_path = find_file(folder, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(folder, prefix + "-labels-idx1-ubyte");
  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  QF_CHECK(images.dims.size() == 3 || images.dims.size() == 4, images_path,
           ": expected 3 dimensions (N,H,W) or 4 (N,C,H,W), got ", images.dims.size());
  QF_CHECK(labels.dims.size() == 1, labels_path, ": expected 1 dimension (N), got ", labels.dims.size());
  QF_CHECK(images.dims[0] == labels.dims[0], images_path, " holds ", images.dims[0], " images but ",
           labels_path, " holds ", labels.dims[0], " labels");
  int64_t count = images.dims[0];
  if (limit > 0) count = std::min(count, limit);
  const int64_t channels = images.dims.size() == 4 ? images.dims[1] : 1;
  const int64_t height = images.dims[images.dims.size() - 2], width = images.dims.back();

  Dataset dataset;
  dataset.images = Tensor::empty({count, channels, height, width}, DType::u8);
  dataset.labels = Tensor::empty({count}, DType::s32);
  dataset.normalization = normalization;
  std::copy_n(images.values.begin(), dataset.images.numel(), dataset.images.data_as<uint8_t>());
  int32_t* out = dataset.labels.data_as<int32_t>();
  int32_t largest = 0;
  for (int64_t i = 0; i < count; ++i) largest = std::max<int32_t>(largest, out[i] = labels.values[i]);
  dataset.num_classes = std::max<int64_t>(10, largest + 1);
  return dataset;
}

}  // namespace qforge::data
