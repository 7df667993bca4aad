#include "nn/zoo.h"

#include "nn/batch_norm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/lstm.h"
#include "nn/resnet.h"
#include "nn/sequential.h"
#include "nn/simple_layers.h"

namespace qforge::nn {

const std::vector<std::string>& zoo_model_names() {
  static const std::vector<std::string> names{"jermmy", "lenet", "resnet8", "resnet20", "lstm"};
  return names;
}

ModulePtr build_zoo_model(const std::string& name, Generator& generator, const ZooOptions& o) {
  auto pool2 = [] { return std::make_shared<MaxPool2d>(Pool2dOptions::square(2)); };
  if (name == "jermmy") {
    const int64_t side = ((o.image_size - 2) / 2 - 2) / 2;  // 28 -> 26 -> 13 -> 11 -> 5
    return std::make_shared<Sequential>(std::vector<ModulePtr>{
        std::make_shared<Conv2d>(o.in_channels, 40, 3, Conv2dOptions{}, true, generator),
        std::make_shared<ReLU>(), pool2(),
        std::make_shared<Conv2d>(40, 40, 3, Conv2dOptions::square(1, 0, 1, 20), true, generator),
        std::make_shared<ReLU>(), pool2(), std::make_shared<Flatten>(),
        std::make_shared<Linear>(40 * side * side, o.num_classes, true, generator)});
  }
  if (name == "lenet") {
    const int64_t side = o.image_size / 4;  // 28 -> 14 -> 7
    return std::make_shared<Sequential>(std::vector<ModulePtr>{
        std::make_shared<Conv2d>(o.in_channels, 32, 5, Conv2dOptions::square(1, 2), true, generator),
        std::make_shared<BatchNorm2d>(32), std::make_shared<ReLU>(), pool2(),
        std::make_shared<Conv2d>(32, 64, 5, Conv2dOptions::square(1, 2), true, generator),
        std::make_shared<BatchNorm2d>(64), std::make_shared<ReLU>(), pool2(), std::make_shared<Flatten>(),
        std::make_shared<Linear>(64 * side * side, 128, true, generator), std::make_shared<ReLU>(),
        std::make_shared<Linear>(128, o.num_classes, true, generator)});
  }
  if (name == "resnet8") return std::make_shared<ResNet>(1, o.in_channels, o.num_classes, generator);
  if (name == "resnet20") return std::make_shared<ResNet>(3, o.in_channels, o.num_classes, generator);
  if (name == "lstm")
    return std::make_shared<LstmClassifier>(o.image_size * o.in_channels, 128, 1, o.num_classes, generator);
  std::string known;
  for (const auto& n : zoo_model_names()) known += (known.empty() ? "" : ", ") + n;
  QF_FAIL("model: unknown zoo model \"", name, "\" (known: ", known, ")");
}

}  // namespace qforge::nn
