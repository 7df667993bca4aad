#include "data/mnist_digits.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/file_io.h"
#include "core/random.h"
#include "data/idx.h"

namespace qforge::data {

void convert_mnist_digits(const std::string& package_folder, const std::string& out_folder) {
  constexpr int64_t pixels = 28 * 28;
  std::vector<uint8_t> images, labels;
  for (int digit = 0; digit < 10; ++digit) {
    const std::string path = package_folder + "/src/digits/" + std::to_string(digit) + ".json";
    nlohmann::json file = nlohmann::json::parse(read_file(path), nullptr, false);
    QF_CHECK(file.is_object() && file.contains("data") && file["data"].is_array(), path,
             ": expected {\"data\": [...]} of pixel values");
    const auto& values = file["data"];
    QF_CHECK(values.size() % pixels == 0 && !values.empty(), path, ": ", values.size(),
             " values is not a whole number of 28x28 digits");
    for (const auto& v : values) {
      QF_CHECK(v.is_number() && v.get<double>() >= 0 && v.get<double>() <= 1, path,
               ": pixel values must be in [0,1]");
      images.push_back(static_cast<uint8_t>(std::lround(v.get<double>() * 255)));
    }
    labels.insert(labels.end(), values.size() / pixels, static_cast<uint8_t>(digit));
  }
  const int64_t count = static_cast<int64_t>(labels.size());
  QF_CHECK(count == kMnistDigitsTrain + kMnistDigitsTest, package_folder, ": expected ",
           kMnistDigitsTrain + kMnistDigitsTest, " digits, found ", count);
  std::vector<int64_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  Generator generator(20150602);  // fixed: the split is part of the dataset's definition
  for (int64_t i = count - 1; i > 0; --i) std::swap(order[i], order[generator.below(i + 1)]);
  auto write_split = [&](const std::string& prefix, int64_t begin, int64_t end) {
    std::vector<uint8_t> split_images, split_labels;
    for (int64_t i = begin; i < end; ++i) {
      split_images.insert(split_images.end(), images.begin() + order[i] * pixels,
                          images.begin() + (order[i] + 1) * pixels);
      split_labels.push_back(labels[order[i]]);
    }
    write_idx(out_folder + "/" + prefix + "-images-idx3-ubyte", {end - begin, 28, 28}, split_images);
    write_idx(out_folder + "/" + prefix + "-labels-idx1-ubyte", {end - begin}, split_labels);
  };
  write_split("train", 0, kMnistDigitsTrain);
  write_split("t10k", kMnistDigitsTrain, count);
}

}  // namespace qforge::data
