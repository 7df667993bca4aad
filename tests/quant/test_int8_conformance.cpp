// The integer ops against PyTorch 1.13 (../shared/reference/torch_int8_vectors.json; the
// formulas and tolerances in README_int8.md). Every case of every op is run through the
// reference kernels and, where the runtime has one, the fast kernel. Exact everywhere
// except add's documented fma cases (|Δ| ≤ 1 on the vector-block pairs) and the float
// outputs of dynamic quantization (1e-5).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "quant/int8/kernels.h"
#include "quant/int8/lstm_ops.h"
#include "tests/quant/int8_test_util.h"
#include "tests/reference.h"

using namespace qforge;
using namespace qforge::quant::int8;
using nlohmann::json;
using qforge::testing::nchw_to_nhwc;
using qforge::testing::nhwc_to_nchw;

namespace {

const json& vectors() {
  static const json file = qforge::testing::load_reference("torch_int8_vectors.json");
  return file;
}

template <typename T>
std::vector<T> ints(const json& values) {
  std::vector<T> out;
  for (const json& v : values) out.push_back(static_cast<T>(v.get<int64_t>()));
  return out;
}

std::vector<float> floats(const json& values) {
  std::vector<float> out;
  for (const json& v : values) out.push_back(static_cast<float>(v.get<double>()));
  return out;
}

// Signed activations (qint8) shifted into uint8 as convert does: q + 128 with zero point + 128
// represents the same real values.
ActivationQuant activation(const json& c, const std::string& prefix, int32_t shift = 0) {
  ActivationQuant q;
  q.scale = static_cast<float>(c[prefix + "scale"].get<double>());
  q.zero_point = c[prefix + "zero_point"].get<int32_t>() + shift;
  return q;
}

int64_t product(const json& shape) {
  int64_t n = 1;
  for (const json& e : shape) n *= e.get<int64_t>();
  return n;
}

void check_equal(const std::vector<uint8_t>& actual, const std::vector<uint8_t>& expected,
                 const std::string& name) {
  REQUIRE(actual.size() == expected.size());
  int64_t mismatches = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) mismatches += actual[i] != expected[i];
  INFO(name);
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("int8 quantize matches torch.quantize_per_tensor exactly (quint8 and shifted qint8)") {
  REQUIRE(vectors()["quantize_per_tensor"].size() >= 7);
  for (const json& c : vectors()["quantize_per_tensor"]) {
    const bool is_signed = c["dtype"] == "qint8";
    const int32_t shift = is_signed ? 128 : 0;
    ActivationQuant p = activation(c, "", shift);
    std::vector<float> x = floats(c["x"]);
    std::vector<uint8_t> q(x.size());
    reference::quantize(q.data(), x.data(), static_cast<int64_t>(x.size()), p);
    std::vector<uint8_t> expected;
    for (int64_t v : ints<int64_t>(c["q"])) expected.push_back(static_cast<uint8_t>(v + shift));
    check_equal(q, expected, c["name"]);
    std::vector<uint8_t> fast_q(x.size());
    fast::quantize(fast_q.data(), x.data(), static_cast<int64_t>(x.size()), p);
    check_equal(fast_q, expected, std::string(c["name"]) + " (fast)");
  }
}

TEST_CASE("int8 weight quantization matches torch.quantize_per_channel exactly") {
  REQUIRE(vectors()["quantize_per_channel"].size() >= 3);
  for (const json& c : vectors()["quantize_per_channel"]) {
    std::vector<float> w = floats(c["x"]), scale = floats(c["scale"]);
    std::vector<int8_t> q(w.size());
    const int64_t channels = static_cast<int64_t>(scale.size());
    quantize_weights(q.data(), w.data(), channels, static_cast<int64_t>(w.size()) / channels, scale,
                     {c["quant_min"].get<int32_t>(), c["quant_max"].get<int32_t>()});
    INFO(c["name"].get<std::string>());
    CHECK(q == ints<int8_t>(c["q"]));
  }
}

TEST_CASE("int8 conv2d matches PyTorch (oneDNN requantization) exactly, grouped and depthwise too") {
  REQUIRE(vectors()["conv2d"].size() >= 18);
  for (const json& c : vectors()["conv2d"]) {
    const auto xs = c["x_shape"].get<std::vector<int64_t>>(), ws = c["w_shape"].get<std::vector<int64_t>>();
    Conv2dShape s{.batch = xs[0],
                  .in_channels = xs[1],
                  .in_height = xs[2],
                  .in_width = xs[3],
                  .out_channels = ws[0],
                  .kernel_height = ws[2],
                  .kernel_width = ws[3],
                  .stride_height = c["stride"][0],
                  .stride_width = c["stride"][1],
                  .padding_height = c["padding"][0],
                  .padding_width = c["padding"][1],
                  .dilation_height = c["dilation"][0],
                  .dilation_width = c["dilation"][1],
                  .groups = c["groups"]};
    const ActivationQuant in = activation(c, "x_"), out = activation(c, "y_");
    std::vector<float> w_scale = floats(c["w_scale"]);
    if (w_scale.size() == 1) w_scale.assign(s.out_channels, w_scale[0]);  // per tensor
    const std::vector<float> bias = c["bias"].is_null() ? std::vector<float>{} : floats(c["bias"]);
    const OutputStage stage = make_requantization(in, w_scale, bias, out, c["relu"]);
    const std::vector<uint8_t> x = nchw_to_nhwc(ints<uint8_t>(c["x_q"]), xs);
    const std::vector<int8_t> w = ints<int8_t>(c["w_q"]);
    const auto ys = c["y_shape"].get<std::vector<int64_t>>();
    REQUIRE(ys[2] == s.out_height());
    REQUIRE(ys[3] == s.out_width());
    std::vector<uint8_t> y(product(c["y_shape"]));
    reference::conv2d(y.data(), x.data(), w.data(), s, in.zero_point, stage);
    check_equal(nhwc_to_nchw(y, ys), ints<uint8_t>(c["y_q"]), c["name"]);
    fast::Conv2dLayer layer(w.data(), s, in.zero_point, stage);
    std::vector<uint8_t> fast_y(y.size());
    layer.run(fast_y.data(), x.data(), s.batch);
    check_equal(nhwc_to_nchw(fast_y, ys), ints<uint8_t>(c["y_q"]), std::string(c["name"]) + " (fast)");
  }
}

TEST_CASE("int8 linear matches PyTorch exactly, per tensor and per channel, 3-D input") {
  REQUIRE(vectors()["linear"].size() >= 7);
  for (const json& c : vectors()["linear"]) {
    const auto ws = c["w_shape"].get<std::vector<int64_t>>();
    const int64_t n = ws[0], k = ws[1], m = product(c["x_shape"]) / k;
    const ActivationQuant in = activation(c, "x_"), out = activation(c, "y_");
    std::vector<float> w_scale = floats(c["w_scale"]);
    if (w_scale.size() == 1) w_scale.assign(n, w_scale[0]);
    const std::vector<float> bias = c["bias"].is_null() ? std::vector<float>{} : floats(c["bias"]);
    const OutputStage stage = make_requantization(in, w_scale, bias, out, c["relu"]);
    const std::vector<uint8_t> x = ints<uint8_t>(c["x_q"]);
    const std::vector<int8_t> w = ints<int8_t>(c["w_q"]);
    std::vector<uint8_t> y(m * n);
    reference::linear(y.data(), x.data(), w.data(), m, n, k, in.zero_point, stage);
    check_equal(y, ints<uint8_t>(c["y_q"]), c["name"]);
    fast::LinearLayer layer(w.data(), n, k, in.zero_point, stage);
    std::vector<uint8_t> fast_y(y.size());
    layer.run(fast_y.data(), x.data(), m);
    check_equal(fast_y, ints<uint8_t>(c["y_q"]), std::string(c["name"]) + " (fast)");
  }
}

TEST_CASE("int8 add / add_relu match PyTorch: exact, except its fma blocks (|Δ| ≤ 1, documented pairs)") {
  REQUIRE(vectors()["add"].size() >= 14);
  for (const json& c : vectors()["add"]) {
    const ActivationQuant pa = activation(c, "a_"), pb = activation(c, "b_"), py = activation(c, "y_");
    const std::vector<uint8_t> a = ints<uint8_t>(c["a_q"]), b = ints<uint8_t>(c["b_q"]),
                               expected = ints<uint8_t>(c["y_q"]);
    const std::string name = c["name"];
    const bool has_fma_pairs = name.rfind("fma_vs_scalar", 0) == 0;
    for (int backend = 0; backend < 2; ++backend) {
      std::vector<uint8_t> y(a.size());
      if (backend == 0)
        reference::add(y.data(), a.data(), b.data(), static_cast<int64_t>(a.size()), pa, pb, py, c["relu"]);
      else
        fast::add(y.data(), a.data(), b.data(), static_cast<int64_t>(a.size()), pa, pb, py, c["relu"]);
      int64_t differ = 0, worst = 0;
      for (std::size_t i = 0; i < y.size(); ++i) {
        const int64_t delta = std::abs(int64_t{y[i]} - expected[i]);
        differ += delta != 0;
        worst = std::max(worst, delta);
        // Only PyTorch's 64-element vector blocks use an fma: the scalar tail must agree.
        if (has_fma_pairs && i >= 64) CHECK(delta == 0);
      }
      CAPTURE(name);
      CAPTURE(backend);
      CHECK(worst <= (has_fma_pairs ? 1 : 0));
      CHECK(differ <= (has_fma_pairs ? 2 : 0));
    }
  }
}

TEST_CASE("int8 relu is max(q, zp), quint8 and shifted qint8") {
  for (const json& c : vectors()["relu"]) {
    const int32_t shift = c["dtype"] == "qint8" ? 128 : 0;
    std::vector<uint8_t> x, expected;
    for (int64_t v : ints<int64_t>(c["x_q"])) x.push_back(static_cast<uint8_t>(v + shift));
    for (int64_t v : ints<int64_t>(c["y_q"])) expected.push_back(static_cast<uint8_t>(v + shift));
    const int32_t zero_point = c["zero_point"].get<int32_t>() + shift;
    std::vector<uint8_t> y(x.size()), fast_y(x.size());
    reference::relu(y.data(), x.data(), static_cast<int64_t>(x.size()), zero_point);
    fast::relu(fast_y.data(), x.data(), static_cast<int64_t>(x.size()), zero_point);
    check_equal(y, expected, c["name"]);
    check_equal(fast_y, expected, std::string(c["name"]) + " (fast)");
  }
}

namespace {
PoolShape pool_shape(const json& c, bool adaptive) {
  const auto xs = c["x_shape"].get<std::vector<int64_t>>(), ys = c["y_shape"].get<std::vector<int64_t>>();
  PoolShape s{.batch = xs[0],
              .channels = xs[1],
              .in_height = xs[2],
              .in_width = xs[3],
              .out_height = ys[2],
              .out_width = ys[3],
              .kernel_height = 1,
              .kernel_width = 1,
              .stride_height = 1,
              .stride_width = 1};
  if (adaptive) return s;
  s.kernel_height = c["kernel_size"][0], s.kernel_width = c["kernel_size"][1];
  s.stride_height = c["stride"][0], s.stride_width = c["stride"][1];
  s.padding_height = c["padding"][0], s.padding_width = c["padding"][1];
  if (c.contains("dilation")) s.dilation_height = c["dilation"][0], s.dilation_width = c["dilation"][1];
  const bool ceil_mode = c["ceil_mode"];
  CHECK(pool_output_size(s.in_height, s.kernel_height, s.stride_height, s.padding_height, s.dilation_height,
                         ceil_mode) == s.out_height);
  CHECK(pool_output_size(s.in_width, s.kernel_width, s.stride_width, s.padding_width, s.dilation_width,
                         ceil_mode) == s.out_width);
  return s;
}
}  // namespace

TEST_CASE("int8 pools match PyTorch exactly in both memory layouts (each with its own rounding)") {
  for (const char* op : {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"}) {
    REQUIRE(vectors()[op].size() >= 10);
    for (const json& c : vectors()[op]) {
      const bool adaptive = std::string(op) == "adaptive_avg_pool2d";
      const PoolShape s = pool_shape(c, adaptive);
      const auto xs = c["x_shape"].get<std::vector<int64_t>>(), ys = c["y_shape"].get<std::vector<int64_t>>();
      const std::vector<uint8_t> x = nchw_to_nhwc(ints<uint8_t>(c["x_q"]), xs);
      const int32_t zero_point = c["zero_point"];
      const bool channels_last = c["memory_format"] == "channels_last";
      const PoolRounding rounding = channels_last ? PoolRounding::channels_last : PoolRounding::contiguous;
      AvgPoolOptions options;
      if (c.contains("count_include_pad")) options.count_include_pad = c["count_include_pad"];
      if (c.contains("divisor_override") && !c["divisor_override"].is_null())
        options.divisor_override = c["divisor_override"];
      std::vector<uint8_t> y(product(c["y_shape"])), fast_y(y.size());
      if (std::string(op) == "max_pool2d") {
        reference::max_pool2d(y.data(), x.data(), s);
        fast::max_pool2d(fast_y.data(), x.data(), s);
      } else if (!adaptive) {
        reference::avg_pool2d(y.data(), x.data(), s, options, zero_point, rounding);
        fast::avg_pool2d(fast_y.data(), x.data(), s, options, zero_point);
      } else {
        reference::adaptive_avg_pool2d(y.data(), x.data(), s, zero_point, rounding);
        fast::adaptive_avg_pool2d(fast_y.data(), x.data(), s, zero_point);
      }
      const std::string name =
          std::string(op) + " " + c["name"].get<std::string>() + " " + c["memory_format"].get<std::string>();
      check_equal(nhwc_to_nchw(y, ys), ints<uint8_t>(c["y_q"]), name);
      // The runtime is channels_last: its fast kernels implement that rounding only.
      if (channels_last || std::string(op) == "max_pool2d")
        check_equal(nhwc_to_nchw(fast_y, ys), ints<uint8_t>(c["y_q"]), name + " (fast)");
    }
  }
}

TEST_CASE("dynamic linear matches PyTorch: the per-call x_scale / x_zero_point, x_q exactly, y to 1e-5") {
  REQUIRE(vectors()["dynamic_linear"].size() >= 5);
  for (const json& c : vectors()["dynamic_linear"]) {
    const auto ws = c["w_shape"].get<std::vector<int64_t>>();
    const int64_t n = ws[0], k = ws[1], m = product(c["x_shape"]) / k;
    std::vector<float> w_scale = floats(c["w_scale"]);
    if (w_scale.size() == 1) w_scale.assign(n, w_scale[0]);
    const std::vector<float> bias = c["bias"].is_null() ? std::vector<float>{} : floats(c["bias"]);
    const DynamicLinear linear(Tensor::from_data<int8_t>({n, k}, ints<int8_t>(c["w_q"])), w_scale, bias);
    const std::vector<float> x = floats(c["x"]), expected = floats(c["y"]);
    const DynamicParams params = linear.choose(x.data(), static_cast<int64_t>(x.size()));
    INFO(c["name"].get<std::string>());
    CHECK(params.scale == c["x_scale"].get<double>());
    CHECK(params.zero_point == c["x_zero_point"].get<int32_t>());
    // x quantized with those parameters, as PyTorch did.
    const ActivationQuant q{static_cast<float>(params.scale), params.zero_point};
    std::vector<uint8_t> x_q;
    for (float v : x) x_q.push_back(quantize_one(v, static_cast<float>(1.0 / params.scale), q));
    CHECK(x_q == ints<uint8_t>(c["x_q"]));
    float largest = 0;
    for (float v : expected) largest = std::max(largest, std::abs(v));
    for (Backend backend : {Backend::reference, Backend::fast}) {
      std::vector<float> y(m * n);
      linear.run(y.data(), x.data(), m, backend);
      double worst = 0;
      for (std::size_t i = 0; i < y.size(); ++i)
        worst = std::max(worst, double{std::abs(y[i] - expected[i])});
      CHECK(worst <= 1e-5 * largest);
    }
  }
}

TEST_CASE("dynamic linear refuses an input holding NaN or infinity, wherever it sits") {
  const std::vector<int8_t> w{1, -2, 3, 4, 5, -6};
  const DynamicLinear linear(Tensor::from_data<int8_t>({2, 3}, w), {0.1f, 0.2f}, {});
  for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()})
    for (int at = 0; at < 6; ++at) {
      std::vector<float> x{0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.25f}, y(4);
      x[at] = bad;
      CHECK_THROWS_WITH_AS(linear.run(y.data(), x.data(), 2, Backend::fast),
                           doctest::Contains("NaN or infinity"), Error);
    }
}

TEST_CASE("dynamic LSTM matches PyTorch's quantized dynamic LSTM to 1e-5 (outputs, h_n, c_n)") {
  REQUIRE(vectors()["dynamic_lstm"].size() >= 2);
  for (const json& c : vectors()["dynamic_lstm"]) {
    const int64_t in = c["input_size"], hidden = c["hidden_size"];
    const auto xs = c["x_shape"].get<std::vector<int64_t>>();  // (T,B,F): time major
    const int64_t steps = xs[0], batch = xs[1];
    auto product_of = [&](const char* part, int64_t cols) {
      const std::string p = std::string("weight_") + part;
      return DynamicLinear(Tensor::from_data<int8_t>({4 * hidden, cols}, ints<int8_t>(c[p + "_q"])),
                           std::vector<float>(4 * hidden, static_cast<float>(c[p + "_scale"].get<double>())),
                           floats(c[std::string("bias_") + part]));
    };
    const DynamicLstmLayer layer{product_of("ih", in), product_of("hh", hidden)};
    // Batch first for qforge.
    const std::vector<float> x_time = floats(c["x"]), y_time = floats(c["y"]);
    std::vector<float> x(x_time.size());
    for (int64_t t = 0; t < steps; ++t)
      for (int64_t b = 0; b < batch; ++b)
        std::copy_n(x_time.data() + (t * batch + b) * in, in, x.data() + (b * steps + t) * in);
    for (Backend backend : {Backend::reference, Backend::fast}) {
      std::vector<float> h = floats(c["h0"]), cell = floats(c["c0"]), outputs(batch * steps * hidden);
      dynamic_lstm_layer(outputs.data(), h.data(), cell.data(), x.data(), batch, steps, layer, backend);
      double worst = 0;
      for (int64_t t = 0; t < steps; ++t)
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t j = 0; j < hidden; ++j)
            worst = std::max(worst, double{std::abs(outputs[(b * steps + t) * hidden + j] -
                                                    y_time[(t * batch + b) * hidden + j])});
      const std::vector<float> h_n = floats(c["h_n"]), c_n = floats(c["c_n"]);
      for (std::size_t i = 0; i < h.size(); ++i)
        worst = std::max({worst, double{std::abs(h[i] - h_n[i])}, double{std::abs(cell[i] - c_n[i])}});
      INFO(c["name"].get<std::string>());
      CHECK(worst <= 1e-5);
    }
  }
}
