// qforge as a library: train lenet a few steps on a synthetic task, prepare it for QAT,
// calibrate, evaluate the fake-quant model, convert it to integers and run that.
#include <cstdio>

#include "core/ops.h"
#include "nn/zoo.h"
#include "quant/convert.h"
#include "quant/prepare.h"
#include "train/optimizer.h"

using namespace qforge;

int main() {
  Generator generator(0);
  constexpr int64_t n = 64;
  // Class c: a bright 4-pixel-wide stripe at column 2c plus noise.
  Tensor images = Tensor::randn({n, 1, 28, 28}, generator, 0.0f, 0.3f),
         labels = Tensor::empty({n}, DType::s32);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = static_cast<int32_t>(i % 10);
    labels.data_as<int32_t>()[i] = c;
    for (int64_t row = 0; row < 28; ++row)
      for (int64_t col = 2 * c; col < 2 * c + 4; ++col) images.data()[(i * 28 + row) * 28 + col] += 2.0f;
  }
  nn::ModulePtr model = nn::build_zoo_model("lenet", generator);
  auto optimizer = train::make_optimizer(model->parameters(), {.type = "adam", .lr = 1e-3});
  for (int step = 0; step < 30; ++step) {
    Tensor loss = cross_entropy(model->forward(images), labels);
    optimizer->zero_grad();
    loss.backward();
    optimizer->step();
  }
  auto qat = quant::prepare_qat(model, quant::parse_quant_spec(nullptr, "consumer"));
  for (int batch = 0; batch < 4; ++batch) qat->forward(images);  // calibrate the observers
  qat->eval();
  NoGradGuard no_grad;
  const Tensor fake_quant = argmax(qat->forward(images), 1);
  const quant::int8::IntegerModel integer = quant::convert(*qat, {1, 28, 28});
  const Tensor int8 = argmax(integer.forward(images), 1);
  int correct = 0, same = 0;
  for (int64_t i = 0; i < n; ++i) {
    correct += fake_quant.data_as<int32_t>()[i] == labels.data_as<int32_t>()[i];
    same += fake_quant.data_as<int32_t>()[i] == int8.data_as<int32_t>()[i];
  }
  std::printf("fake-quant accuracy %.1f%%, integer model agrees on %d/%lld images\n", 100.0 * correct / n,
              same, static_cast<long long>(n));
  return correct > n * 3 / 4 && same == n ? 0 : 1;
}
