// Chapter 2, observers and calibration: PyTorch's observers on the literature's two
// batches (../shared/reference/seed_examples.json, copied below), NVIDIA's tensor_quant
// on its ten values, and NVIDIA's four calibrators on a skewed activation.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/random.h"
#include "quant/calibrator.h"
#include "quant/fake_quantize.h"
#include "quant/observer_factory.h"

using namespace qforge;
using namespace qforge::quant;

namespace {

// The two (3, 4) batches the PyTorch tutorial feeds its observers.
const std::vector<std::vector<float>> kBatches{{-0.059f, 1.1674f, 0.7119f, -1.127f, -1.3974f, 0.5077f,
                                                -0.5601f, 0.0683f, -0.0929f, 0.9473f, 0.7159f, -0.4574f},
                                               {-0.0236f, -0.7599f, 1.029f, 0.8914f, -1.1727f, -1.2556f,
                                                -0.2271f, 0.9568f, -0.25f, 1.4579f, 1.4707f, 0.4043f}};

std::string list(const QuantParams& p) {
  std::string scales, zeros;
  char buffer[32];
  for (std::size_t c = 0; c < p.scale.size(); ++c) {
    std::snprintf(buffer, sizeof buffer, "%s%.7f", c ? ", " : "", p.scale[c]);
    scales += buffer;
    zeros += (c ? ", " : "") + std::to_string(p.zero_point[c]);
  }
  return "scale [" + scales + "]  zero point [" + zeros + "]";
}

}  // namespace

int main() {
  std::printf("PyTorch's observers (quint8 unless said) on the tutorial's two batches:\n");
  struct Case {
    const char* name;
    const char* kind;
    QuantScheme scheme;
    const char* printed;  // what the literature prints
  };
  const Case cases[] = {
      {"MinMaxObserver", "minmax", {}, "0.0112 / 124"},
      {"MovingAverageMinMaxObserver", "moving_average", {}, "0.0101 / 139"},
      {"HistogramObserver", "histogram", {}, "0.0100 / 106"},
      {"MovingAverageMinMax, symmetric", "moving_average", {.symmetric = true}, "0.0109 / 128"},
      {"MovingAveragePerChannel, axis 0", "moving_average", {.axis = 0}, "0.0090 0.0075 0.0055 / 125 187 82"},
  };
  for (const Case& c : cases) {
    auto observer = make_observer(c.kind, c.scheme);
    for (const std::vector<float>& batch : kBatches) observer->observe(Tensor::from_vector({3, 4}, batch));
    std::printf("  %-32s %s\n  %32s (printed: %s)\n", c.name, list(observer->calculate_qparams()).c_str(), "",
                c.printed);
  }

  std::printf("\nNVIDIA's tensor_quant (8-bit signed, amax = max|x|) on its ten values:\n");
  const std::vector<float> x{0.9817182f, 0.8796065f, 0.9921435f, 0.4610673f, 0.083216f,
                             0.1784311f, 0.3674315f, 0.5676497f, 0.3376067f, 0.2119466f};
  const AmaxQuantized q = fake_quantize_amax(Tensor::from_vector({10}, x), 0.9921435f, 8, false);
  std::printf("  scale = 127/amax = %.5f (printed: 128.00568)\n  q =", q.scale);
  for (int i = 0; i < 10; ++i) std::printf(" %.0f", q.integer.data()[i]);
  std::printf("\n");

  // A skewed activation: |N(0,1)|³ — most values small, a long tail of rare large ones.
  Generator generator(7);
  Tensor activation = Tensor::randn({20000}, generator);
  for (int64_t i = 0; i < activation.numel(); ++i)
    activation.data()[i] = std::pow(std::fabs(activation.data()[i]), 3.0f);
  std::printf("\nNVIDIA's calibrators on a skewed activation (20000 values of |N(0,1)|^3), unsigned:\n");
  std::printf("  %-18s %10s %14s %10s %14s\n", "calibrator", "8-bit amax", "mean sq. error", "4-bit amax",
              "mean sq. error");
  for (const char* kind : {"max", "percentile:99.9", "percentile:99.99", "mse", "entropy"}) {
    std::printf("  %-18s", kind);
    for (int bits : {8, 4}) {
      auto calibrator = make_observer(kind, {.bits = bits, .is_signed = false, .symmetric = true});
      calibrator->observe(activation);
      const float amax = dynamic_cast<CalibratorObserver&>(*calibrator).amax()[0];
      const AmaxQuantized fake = fake_quantize_amax(activation, amax, bits, true);
      double error = 0;
      for (int64_t i = 0; i < activation.numel(); ++i) {
        const double d = fake.fake.data()[i] - activation.data()[i];
        error += d * d / static_cast<double>(activation.numel());
      }
      std::printf(" %10.4f %14.3e", amax, error);
    }
    std::printf("\n");
  }
  return 0;
}
