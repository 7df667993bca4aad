// Calibrators against NVIDIA pytorch-quantization's algorithms (calib/max.py,
// calib/histogram.py with torch_hist), whose amax values for the data below were
// printed by a transcription of that code run with PyTorch 1.13 and NumPy: three
// batches x_i = 2·sin(0.37·i + b) + 0.01·(i mod 13) + 8·[i mod 997 = 0], i < 4000,
// so the |x| histogram grows from 2048 to 2147 bins over [0, 9.9435].
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "core/ops.h"
#include "core/random.h"
#include "quant/calibrator.h"
#include "quant/fake_quantize.h"
#include "quant/observer_factory.h"
#include "quant/qconfig.h"

using namespace qforge;
using namespace qforge::quant;

namespace {
Tensor batch(int b) {
  std::vector<float> values(4000);
  for (int i = 0; i < 4000; ++i)
    values[i] = static_cast<float>(std::sin(0.37 * i + b) * 2 + 0.01 * (i % 13) + (i % 997 == 0 ? 8.0 : 0.0));
  return Tensor::from_vector({4000}, values);
}

AbsHistogram collected() {
  AbsHistogram histogram;
  for (int b = 0; b < 3; ++b) histogram.collect(batch(b), 2048);
  return histogram;
}
}  // namespace

TEST_CASE("the |x| histogram grows by whole bins like NVIDIA's collector") {
  AbsHistogram h = collected();
  CHECK(h.counts.size() == 2147);
  CHECK(h.edges.back() == doctest::Approx(9.943538665771484).epsilon(1e-6));
  double total = 0;
  for (double c : h.counts) total += c;
  CHECK(total == 12000);
}

TEST_CASE("percentile, MSE and entropy calibration match NVIDIA's amax") {
  AbsHistogram h = collected();
  CHECK(percentile_amax(h, 99.0) == doctest::Approx(2.093376636505127).epsilon(1e-5));
  CHECK(percentile_amax(h, 99.9) == doctest::Approx(6.6274824142456055).epsilon(1e-5));
  CHECK(mse_amax(h, 8, false) == doctest::Approx(9.64018440246582).epsilon(1e-5));
  CHECK(mse_amax(h, 4, true) == doctest::Approx(7.208718299865723).epsilon(1e-5));
  CHECK(entropy_amax(h, 8, false) == doctest::Approx(2.1211647987365723).epsilon(1e-5));
  CHECK(entropy_amax(h, 4, true) == doctest::Approx(2.1165332794189453).epsilon(1e-5));
}

TEST_CASE("calibrators as observers: max per channel, symmetric parameters, state round trip") {
  QuantScheme scheme{.bits = 8, .is_signed = true, .symmetric = true, .axis = 0, .narrow_range = true};
  auto max = make_observer("max", scheme);
  max->observe(Tensor::from_vector({2, 3}, {1, -4, 2, 0.5f, 0.25f, -0.75f}));
  QuantParams p = max->calculate_qparams();
  CHECK(p.scale[0] == doctest::Approx(4.0f / 127));
  CHECK(p.scale[1] == doctest::Approx(0.75f / 127));
  CHECK(p.zero_point == std::vector<int64_t>{0, 0});
  auto entropy = make_observer("entropy", {.is_signed = true, .symmetric = true});
  for (int b = 0; b < 3; ++b) entropy->observe(batch(b));
  CHECK(entropy->calculate_qparams().scale[0] == doctest::Approx(2.1211647987365723 / 127).epsilon(1e-5));
  auto restored = make_observer("entropy", {.is_signed = true, .symmetric = true});
  restored->load_state(entropy->state());
  CHECK(restored->calculate_qparams().scale == entropy->calculate_qparams().scale);
  auto p999 = make_observer("percentile:99.9", {.is_signed = true, .symmetric = true});
  for (int b = 0; b < 3; ++b) p999->observe(batch(b));
  CHECK(p999->calculate_qparams().scale[0] == doctest::Approx(6.6274824142456055 / 127).epsilon(1e-5));
  CHECK_THROWS_AS(make_observer("kl", {}), Error);
}

TEST_CASE("the observer registry: every kind parses, prints back, builds, and the config accepts it") {
  CHECK(observer_kinds().size() == 7);
  for (const ObserverKindInfo& info : observer_kinds()) {
    CAPTURE(info.name);
    const ObserverChoice choice = ObserverChoice::parse(info.name);
    CHECK(choice.kind == info.kind);
    CHECK(ObserverChoice::parse(choice.to_string()) == choice);
    const QuantScheme scheme{.is_signed = true, .symmetric = true, .axis = info.allows_per_channel ? 0 : -1};
    auto observer = make_observer(choice, scheme);
    observer->observe(batch(0));
    CHECK(observer->calculate_qparams().scale[0] > 0);
    const nlohmann::json section{
        {"weight", {{"observer", info.name}, {"per_channel", info.allows_per_channel}}}};
    CHECK(parse_quant_spec(section, "t.json").defaults.weight.observer.kind == info.kind);
  }
  CHECK(ObserverChoice::parse("percentile:99.9").percentile == 99.9);
  CHECK_THROWS_WITH_AS(ObserverChoice::parse("percentile:abc"), doctest::Contains("P in (0, 100]"), Error);
  CHECK_THROWS_WITH_AS(ObserverChoice::parse("minmax:3"), doctest::Contains("known: minmax, moving_average"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_quant_spec(nlohmann::json{{"weight", {{"observer", "entropy"}}}}, "t.json"),
                       doctest::Contains("quant.weight.observer: entropy calibration is per tensor"), Error);
}

TEST_CASE("clipping calibrators beat max calibration on data with outliers") {
  // The point of percentile/MSE/entropy: quantization error on the bulk of the data.
  Tensor x = Tensor::empty({12000});
  for (int b = 0; b < 3; ++b) std::copy_n(batch(b).data(), 4000, x.data() + b * 4000);
  auto error_with = [&](const std::string& kind) {
    auto observer = make_observer(kind, {.bits = 4, .is_signed = true, .symmetric = true});
    observer->observe(x);
    Tensor y = fake_quantize(x, observer->calculate_qparams(), quant_range(4, true));
    return mse_loss(y, x).item();
  };
  const float max_error = error_with("max");
  CHECK(error_with("mse") < max_error);
  CHECK(error_with("entropy") < max_error);
  CHECK(error_with("percentile:99.9") < max_error);
}

TEST_CASE("per-channel mse: each channel's amax is the brute-force minimum of the squared error") {
  // Weights-like (out=3, in=4, 5×5): a Gaussian, a Laplacian-ish channel with one outlier,
  // a uniform one; searched at 4 bits, checked against 2000 evenly spaced candidates.
  Generator generator(11);
  Tensor w = Tensor::randn({3, 4, 5, 5}, generator);
  for (int64_t i = 0; i < 100; ++i) {
    float& v = w.data()[100 + i];
    v = v * v * v / 3;  // heavy tails
    w.data()[200 + i] = static_cast<float>(i % 10) / 10 - 0.45f;
  }
  w.data()[150] = 9.0f;
  const QuantScheme scheme{.bits = 4, .is_signed = true, .symmetric = true, .axis = 0};
  auto observer = make_observer("mse", scheme);
  observer->observe(w);
  const QuantParams params = observer->calculate_qparams();
  REQUIRE(params.scale.size() == 3);
  for (int64_t c = 0; c < 3; ++c) {
    CAPTURE(c);
    Tensor channel =
        Tensor::from_vector({100}, std::vector<float>(w.data() + 100 * c, w.data() + 100 * c + 100));
    float top = 0;
    for (float v : channel.to_vector()) top = std::max(top, std::fabs(v));
    auto error = [&](float amax) {
      QuantParams p{{amax / 7}, {0}};
      return mse_loss(fake_quantize(channel, p, scheme.range()), channel).item();
    };
    float brute = error(top);
    for (int k = 1; k <= 2000; ++k) brute = std::min(brute, error(top * k / 2000));
    const float found = error(params.scale[c] * 7);
    CHECK(found <= brute * 1.002f);
    CHECK(params.zero_point[c] == 0);
  }
  // The outlier is clipped (not the max); the uniform channel (max 0.45) barely.
  CHECK(params.scale[1] * 7 < 9.0f);
  CHECK(params.scale[2] * 7 > 0.4f);
  // Its state (the per-channel amax) round-trips.
  auto restored = make_observer("mse", scheme);
  restored->load_state(observer->state());
  CHECK(restored->calculate_qparams().scale == params.scale);
}
