// Observers against PyTorch 1.13: every case of torch_quant_vectors.json "observers"
// and the observer outputs printed in the literature (seed_examples.json). Scales to
// 1e-5 relative (the files print 7 decimals: checked to that precision), zero points exactly.
#include <doctest/doctest.h>

#include <cmath>

#include "quant/observer_factory.h"
#include "tests/reference.h"

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;

namespace {
// The scheme and kind each reference case names.
std::pair<std::string, QuantScheme> parse_case(const std::string& name) {
  QuantScheme scheme;
  scheme.is_signed = name.find("qint8") != std::string::npos;
  scheme.symmetric = name.find("symmetric") != std::string::npos;
  scheme.reduce_range = name.find("reduce_range") != std::string::npos;
  if (name.find("per_channel") != std::string::npos) scheme.axis = 0;
  std::string kind = name.find("moving_average") != std::string::npos ? "moving_average"
                     : name.find("histogram") != std::string::npos    ? "histogram"
                                                                      : "minmax";
  return {kind, scheme};
}

void check_params(const QuantParams& actual, const json& scale, const json& zero_point) {
  REQUIRE(actual.scale.size() == scale.size());
  for (std::size_t c = 0; c < scale.size(); ++c) {
    CAPTURE(c);
    const double want = scale[c].get<double>();
    CHECK(actual.scale[c] == doctest::Approx(want).epsilon(std::max(1e-5, 0.5e-7 / want)));
    CHECK(actual.zero_point[c] == zero_point[c].get<int64_t>());
  }
}
}  // namespace

TEST_CASE("observers match PyTorch on torch_quant_vectors.json") {
  json reference = qforge::testing::load_reference("torch_quant_vectors.json");
  REQUIRE(reference["observers"].size() == 8);
  for (const json& c : reference["observers"]) {
    const std::string name = c["name"];
    const std::string captured_name(name);
    CAPTURE(captured_name);
    auto [kind, scheme] = parse_case(name);
    auto observer = make_observer(kind, scheme);
    const Shape shape(c["shape"].get<std::vector<int64_t>>());
    for (const json& batch : c["batches"])
      observer->observe(Tensor::from_vector(shape, batch.get<std::vector<float>>()));
    check_params(observer->calculate_qparams(), c["scale"], c["zero_point"]);
  }
}

TEST_CASE("observers reproduce the seed documents' printed examples") {
  json seed = qforge::testing::load_reference("seed_examples.json");
  struct Case {
    const char* name;
    const char* kind;
    QuantScheme scheme;
  };
  const Case cases[] = {
      {"MinMaxObserver", "minmax", {}},
      {"MovingAverageMinMaxObserver", "moving_average", {}},
      {"HistogramObserver", "histogram", {}},
      {"MovingAverageMinMaxObserver_symmetric", "moving_average", {.symmetric = true}},
      {"MovingAveragePerChannelMinMaxObserver_axis0", "moving_average", {.axis = 0}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    auto observer = make_observer(c.kind, c.scheme);
    for (const json& input : seed["observer_inputs"]) {
      std::vector<float> values;
      for (const json& row : input)
        for (const json& v : row) values.push_back(v.get<float>());
      observer->observe(Tensor::from_vector(
          {static_cast<int64_t>(input.size()), static_cast<int64_t>(input[0].size())}, values));
    }
    check_params(observer->calculate_qparams(), seed["observers"][c.name]["scale"],
                 seed["observers"][c.name]["zero_point"]);
  }
}

TEST_CASE("qparams: the range always includes zero, scale >= eps, unobserved gives (1, 0)") {
  QuantParams p = qparams_from_min_max({2.0f}, {3.0f}, {});
  CHECK(p.scale[0] == doctest::Approx(3.0f / 255));
  CHECK(p.zero_point[0] == 0);
  QuantParams q = qparams_from_min_max({0.0f}, {0.0f}, {});
  CHECK(q.scale[0] == doctest::Approx(1.1920929e-07f));
  MinMaxObserver never({});
  CHECK(never.calculate_qparams().scale[0] == 1.0f);
  CHECK(never.calculate_qparams().zero_point[0] == 0);
  // 4-bit unsigned symmetric centres the zero point at (0+15)//2, PyTorch's customized range.
  CHECK(qparams_from_min_max({-1.0f}, {1.0f}, {.bits = 4, .symmetric = true}).zero_point[0] == 7);
}

TEST_CASE("observer state round-trips") {
  MinMaxObserver a({.axis = 0}, 0.01f), b({.axis = 0}, 0.01f);
  a.observe(Tensor::from_vector({2, 2}, {1, -2, 3, 4}));
  b.load_state(a.state());
  CHECK(b.calculate_qparams().scale == a.calculate_qparams().scale);
  HistogramObserver h({}), g({});
  h.observe(Tensor::from_vector({4}, {-1.5f, 0.2f, 0.7f, 2.5f}));
  g.load_state(h.state());
  CHECK(g.calculate_qparams().zero_point == h.calculate_qparams().zero_point);
}

TEST_CASE("histogram observer matches PyTorch on larger batches that grow the range") {
  // Four batches x_i = sin(0.37·i + b)·(1.5 + b) + (i mod 7)·0.1·(b+1) − 0.2·b, i < 3000, each
  // widening the range so histograms are upsampled and combined. Values printed by
  // PyTorch 1.13's HistogramObserver (affine quint8 and symmetric qint8).
  struct Case {
    QuantScheme scheme;
    double scale;
    int64_t zero_point;
  };
  for (const Case& c :
       {Case{{}, 0.044809863, 114}, Case{{.is_signed = true, .symmetric = true}, 0.0497089066, 0}}) {
    HistogramObserver observer(c.scheme);
    for (int b = 0; b < 4; ++b) {
      std::vector<float> values(3000);
      for (int i = 0; i < 3000; ++i)
        values[i] =
            static_cast<float>(std::sin(i * 0.37 + b) * (1.5 + b) + (i % 7) * 0.1 * (b + 1) - 0.2 * b);
      observer.observe(Tensor::from_vector({3000}, values));
    }
    QuantParams params = observer.calculate_qparams();
    CHECK(params.scale[0] == doctest::Approx(c.scale).epsilon(1e-5));
    CHECK(params.zero_point[0] == c.zero_point);
  }
}

TEST_CASE("a symmetric unsigned reduced range centres its zero point inside the range") {
  // PyTorch 1.13 gives zero point 128 on [0, 127] here (its has_customized_qrange ignores
  // reduce_range); every value then quantizes to the top level. qforge centres it.
  QuantScheme scheme{.bits = 8, .is_signed = false, .symmetric = true, .reduce_range = true};
  const QuantParams p = qparams_from_min_max({-1.0f}, {2.0f}, scheme);
  CHECK(p.zero_point[0] == 63);
  CHECK(p.scale[0] == doctest::Approx(2.0 / 63.5));
  const QuantRange range = scheme.range();
  CHECK(p.zero_point[0] >= range.quant_min);
  CHECK(p.zero_point[0] <= range.quant_max);
  scheme.reduce_range = false;  // the 8-bit default keeps PyTorch's 128
  CHECK(qparams_from_min_max({-1.0f}, {2.0f}, scheme).zero_point[0] == 128);
}

TEST_CASE("minmax observer: the lane-split reduction finds the exact extremes past every block and tail") {
  // Per tensor the input is split into 16K blocks across threads and each block into 16
  // lanes; per channel each row into lanes. Lengths below, at and past those, extremes
  // placed in the tails, and a NaN, which is skipped as std::min/std::max skip it.
  for (const int64_t n :
       {int64_t{1}, int64_t{15}, int64_t{17}, int64_t{16384}, int64_t{16400}, int64_t{100003}}) {
    CAPTURE(n);
    std::vector<float> values(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) values[i] = std::sin(static_cast<float>(i) * 0.37f);
    values[n - 1] = -7.5f;             // the last element: in a tail
    if (n > 2) values[n / 2] = 9.25f;  // inside a block
    if (n > 3) values[1] = std::nanf("");
    MinMaxObserver per_tensor(QuantScheme{});
    per_tensor.observe(Tensor::from_vector({n}, values));
    CHECK(per_tensor.min_values()[0] == -7.5f);
    CHECK(per_tensor.max_values()[0] == (n > 2 ? 9.25f : values[0]));

    QuantScheme channel_scheme;
    channel_scheme.axis = 0;
    MinMaxObserver per_channel(channel_scheme);
    std::vector<float> rows(values);
    rows.insert(rows.end(), values.rbegin(), values.rend());  // row 1: reversed, the extremes move
    per_channel.observe(Tensor::from_vector({2, n}, rows));
    for (int c = 0; c < 2; ++c) {
      CHECK(per_channel.min_values()[c] == -7.5f);
      CHECK(per_channel.max_values()[c] == (n > 2 ? 9.25f : values[0]));
    }
  }
}
