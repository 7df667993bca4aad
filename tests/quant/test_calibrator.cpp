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

namespace {
// Σ count·(c − fq(c))² over the bin centres of both histograms with PyTorch's affine
// parameters for [lo, hi], computed through fake_quantize (the library's tensor path), for
// the hand check of the affine search.
double affine_histogram_error(const AbsHistogram& positive, const AbsHistogram& negative, float lo, float hi,
                              const QuantScheme& scheme) {
  const QuantParams params = qparams_from_min_max({lo}, {hi}, scheme);
  double error = 0;
  for (const auto& [h, sign] : {std::pair{&positive, 1.0f}, std::pair{&negative, -1.0f}}) {
    if (h->counts.empty()) continue;
    std::vector<float> centres(h->counts.size());
    for (std::size_t b = 0; b < centres.size(); ++b) centres[b] = sign * (h->edges[b] + h->edges[b + 1]) / 2;
    const Tensor x = Tensor::from_vector({static_cast<int64_t>(centres.size())}, centres);
    const std::vector<float> y = fake_quantize(x, params, scheme.range()).to_vector();
    for (std::size_t b = 0; b < centres.size(); ++b)
      error += static_cast<double>(y[b] - centres[b]) * (y[b] - centres[b]) * h->counts[b];
  }
  return error;
}
}  // namespace

TEST_CASE("affine mse: two histograms, the least-error clip over every candidate, by hand") {
  // Skewed data: mostly in [-1, 3], a few outliers to 9 on the positive side only.
  std::vector<float> values(6000);
  for (int i = 0; i < 6000; ++i)
    values[i] = static_cast<float>(2 * std::sin(0.37 * i) + 1 + (i % 997 == 0 ? 8 : 0));
  const Tensor x = Tensor::from_vector({6000}, values);
  AbsHistogram positive, negative;
  positive.collect(x, 2048, HistogramPart::positive);
  negative.collect(x, 2048, HistogramPart::negative);
  double positives = 0, negatives = 0;
  for (double c : positive.counts) positives += c;
  for (double c : negative.counts) negatives += c;
  int64_t below = 0, above = 0;
  for (float v : values) {
    below += v < 0 ? 1 : 0;
    above += v > 0 ? 1 : 0;
  }
  CHECK(positives == above);
  CHECK(negatives == below);
  CHECK(negative.top() == doctest::Approx(1.0f).epsilon(1e-3));  // the most negative value, -1
  for (const bool is_signed : {false, true}) {
    CAPTURE(is_signed);
    const QuantScheme scheme{.bits = 4, .is_signed = is_signed};
    const AffineRange found = affine_mse_range(positive, negative, scheme);
    // Every candidate the search may take: t = M·k/2048 for k = 128..2048, both sides clipped at t.
    const float top = positive.top();
    double best = INFINITY;
    float best_t = 0;
    for (int k = 128; k <= 2048; ++k) {
      const float t = top * static_cast<float>(k) / 2048;
      const double e = affine_histogram_error(positive, negative, -std::min(t, negative.top()),
                                              std::min(t, positive.top()), scheme);
      if (e < best) best = e, best_t = t;
    }
    CHECK(found.hi == doctest::Approx(best_t).epsilon(1e-6));
    CHECK(found.lo == doctest::Approx(-std::min(best_t, negative.top())).epsilon(1e-6));
    CHECK(affine_histogram_error(positive, negative, found.lo, found.hi, scheme) ==
          doctest::Approx(best).epsilon(1e-9));
    // The outliers are clipped, the negative side is not: an asymmetric range.
    CHECK(found.hi < 0.75f * positive.top());
    CHECK(found.lo == doctest::Approx(-negative.top()));
  }
}

TEST_CASE("affine mse as an observer: a ReLU output gets every level, a signed tensor a zero point inside") {
  // |x| of the calibrator batches: no negative value, as after a ReLU.
  const QuantScheme affine{.bits = 4};
  auto relu_output = make_observer("mse", affine);
  std::vector<Tensor> relu_batches;
  for (int b = 0; b < 3; ++b) {
    Tensor x = batch(b);
    for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = std::fabs(x.data()[i]);
    relu_batches.push_back(x);
  }
  for (const Tensor& x : relu_batches) relu_output->observe(x);
  const QuantParams p = relu_output->calculate_qparams();
  CHECK(p.zero_point[0] == 0);  // [0, hi]: levels 0..15 all on the data's side
  // The same data through the symmetric signed mse, which keeps 8 levels for values it never
  // sees: the affine parameters lose less (the point of Note [Affine mse]).
  Tensor all = Tensor::empty({12000});
  for (int b = 0; b < 3; ++b) std::copy_n(relu_batches[b].data(), 4000, all.data() + b * 4000);
  auto error_of = [&](const QuantParams& params, const QuantRange& range) {
    return mse_loss(fake_quantize(all, params, range), all).item();
  };
  auto signed_mse = make_observer("mse", {.bits = 4, .is_signed = true, .symmetric = true});
  signed_mse->observe(all);
  const float signed_error = error_of(signed_mse->calculate_qparams(), quant_range(4, true));
  const float affine_error = error_of(p, affine.range());
  CHECK(affine_error < 0.5f * signed_error);
  // ... and less than minmax's affine range, which keeps the outliers.
  auto minmax = make_observer("minmax", affine);
  minmax->observe(all);
  CHECK(affine_error < error_of(minmax->calculate_qparams(), affine.range()));

  // A tensor with both signs: the zero point lies strictly inside the range.
  auto both = make_observer("mse", affine);
  for (int b = 0; b < 3; ++b) both->observe(batch(b));
  const QuantParams q = both->calculate_qparams();
  CHECK(q.zero_point[0] > 0);
  CHECK(q.zero_point[0] < 15);
  // Its state (both histograms) round-trips.
  auto restored = make_observer("mse", affine);
  restored->load_state(both->state());
  CHECK(restored->calculate_qparams().scale == q.scale);
  CHECK(restored->calculate_qparams().zero_point == q.zero_point);
  // Only zeros seen: PyTorch's range [0, 0] (scale 1, zero point 0), not an error.
  auto zeros = make_observer("mse", affine);
  zeros->observe(Tensor::zeros({16}));
  CHECK(zeros->calculate_qparams().zero_point[0] == 0);
}

TEST_CASE("the config: mse may be affine per tensor; the other calibrators, and mse per channel, may not") {
  CHECK(parse_quant_spec(nlohmann::json{{"activation", {{"observer", "mse"}, {"bits", 4}}}}, "t.json")
            .defaults.activation.observer.kind == ObserverKind::mse);
  CHECK_THROWS_WITH_AS(
      parse_quant_spec(nlohmann::json{{"activation", {{"observer", "entropy"}}}}, "t.json"),
      doctest::Contains("quant.activation.observer: calibrators max, percentile and entropy give symmetric"),
      Error);
  CHECK_THROWS_WITH_AS(
      parse_quant_spec(
          nlohmann::json{{"weight", {{"observer", "mse"}, {"symmetric", false}, {"per_channel", true}}}},
          "t.json"),
      doctest::Contains("quant.weight.observer: mse searches affine ranges per tensor"), Error);
}
