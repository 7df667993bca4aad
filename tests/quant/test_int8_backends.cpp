// The fast integer backend against the reference, byte for byte, on every instruction
// set this CPU supports (Note [Int8 instruction sets]) — the generic one always, AVX2
// and AVX-512 VNNI where present; the test never assumes one. Cases are small structs
// (ggml's test-backend-ops style), with shapes past every block: GEMM row tiles (96),
// micro-kernel rows (4..16) and column blocks (8/16, 24/64 per pass), k tails (mod 2, 4),
// thread splits; and extreme values: activations 0 and 255, weights −128 and 127, which
// overflow int16 pair sums (the AVX2 saturation trap) and so must be checked on the raw
// accumulators as well as after requantization.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "core/random.h"
#include "core/threading.h"
#include "quant/int8/kernels.h"

using namespace qforge;
using namespace qforge::quant::int8;

namespace {

enum class Fill { random, extreme_positive, extreme_negative, alternating };

std::vector<uint8_t> activations(int64_t n, Fill fill, Generator& g) {
  std::vector<uint8_t> x(n);
  for (int64_t i = 0; i < n; ++i)
    x[i] = fill == Fill::random        ? static_cast<uint8_t>(g.below(256))
           : fill == Fill::alternating ? (i % 2 ? 255 : 0)
                                       : 255;
  return x;
}

std::vector<int8_t> weights(int64_t n, Fill fill, Generator& g) {
  std::vector<int8_t> w(n);
  for (int64_t i = 0; i < n; ++i)
    w[i] = fill == Fill::random             ? static_cast<int8_t>(static_cast<int>(g.below(256)) - 128)
           : fill == Fill::extreme_positive ? int8_t{127}
           : fill == Fill::extreme_negative ? int8_t{-128}
                                            : (i % 3 ? int8_t{127} : int8_t{-128});
  return w;
}

// An output stage that spreads a layer's outputs over its range: sy from the spread of
// a typical accumulator, so few outputs clamp.
OutputStage stage_for(int64_t channels, int64_t k, Generator& g, bool has_relu, bool is_float, int bits = 8) {
  ActivationQuant in{.scale = 0.02f, .zero_point = 0};
  std::vector<float> weight_scale, bias;
  for (int64_t j = 0; j < channels; ++j) {
    weight_scale.push_back(g.uniform(0.002f, 0.01f));
    bias.push_back(g.uniform(-1, 1));
  }
  if (is_float) return make_dequantization(in, weight_scale, bias, has_relu);
  const float spread = 0.02f * 0.006f * 128 * 74 * std::sqrt(static_cast<float>(k));
  ActivationQuant out{.scale = spread / static_cast<float>((1 << bits) - 1),
                      .zero_point = static_cast<int32_t>(g.below(1 << bits)),
                      .quant_min = 0,
                      .quant_max = (1 << bits) - 1};
  return make_requantization(in, weight_scale, bias, out, has_relu);
}

int64_t count_differences(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t differ = 0;
  for (std::size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
  return differ;
}

std::string isas_tested() {
  std::string names;
  for (Isa isa : supported_isas()) names += std::string(names.empty() ? "" : ", ") + isa_name(isa);
  return names;
}

}  // namespace

TEST_CASE("int8 GEMM accumulators: every instruction set equals the reference, extremes included") {
  MESSAGE("instruction sets tested: " << isas_tested());
  struct Case {
    int64_t m, n, k;
    Fill x_fill, w_fill;
  };
  const Case cases[] = {
      {1, 1, 1, Fill::random, Fill::random},
      {7, 10, 13, Fill::random, Fill::random},
      {97, 17, 35, Fill::random, Fill::random},
      {200, 130, 3137, Fill::random, Fill::random},
      {33, 64, 4, Fill::random, Fill::random},
      {96, 65, 7, Fill::random, Fill::random},
      {193, 24, 800, Fill::random, Fill::random},
      {13, 48, 66, Fill::random, Fill::random},
      {50, 33, 1000, Fill::extreme_positive, Fill::extreme_positive},
      {50, 33, 1000, Fill::extreme_positive, Fill::extreme_negative},
      {29, 40, 362, Fill::alternating, Fill::alternating},
      {16, 16, 4096, Fill::extreme_positive, Fill::extreme_negative},
  };
  Generator g(1);
  for (const Case& c : cases) {
    const std::vector<uint8_t> x = activations(c.m * c.k, c.x_fill, g);
    const std::vector<int8_t> w = weights(c.n * c.k, c.w_fill, g);
    std::vector<int32_t> expected(c.m * c.n);
    reference::linear_accumulate(expected.data(), x.data(), w.data(), c.m, c.n, c.k, 0);
    for (Isa isa : supported_isas()) {
      PackedWeights packed(w.data(), c.n, 1, c.k, isa);
      // Rows with room to read past k, filled with junk that zero weights must cancel.
      const int64_t lda = c.k + 7;
      std::vector<uint8_t> bytes(c.m * lda + 64, 77);
      std::vector<int16_t> words(c.m * lda + 64, 77);
      std::vector<int64_t> row_offsets;
      for (int64_t i = 0; i < c.m; ++i) {
        row_offsets.push_back(i * lda);
        std::copy_n(x.data() + i * c.k, c.k, bytes.data() + i * lda);
        std::copy_n(x.data() + i * c.k, c.k, words.data() + i * lda);
      }
      const int64_t tap_offsets[1] = {0};
      const void* base = packed.element_size() == 2 ? static_cast<const void*>(words.data()) : bytes.data();
      std::vector<int32_t> actual(c.m * (c.n + 5), -1);
      packed.multiply(actual.data(), c.n + 5, {base, row_offsets.data(), tap_offsets}, c.m);
      int64_t differ = 0, columns_written_past_n = 0;
      for (int64_t i = 0; i < c.m; ++i) {
        for (int64_t j = 0; j < c.n; ++j) differ += actual[i * (c.n + 5) + j] != expected[i * c.n + j];
        for (int64_t j = c.n; j < c.n + 5; ++j) columns_written_past_n += actual[i * (c.n + 5) + j] != -1;
      }
      CAPTURE(isa_name(isa));
      INFO("m ", c.m, " n ", c.n, " k ", c.k);
      CHECK(differ == 0);
      CHECK(columns_written_past_n == 0);
    }
  }
}

TEST_CASE("int8 linear: fast equals reference on every instruction set, u8 and float outputs, 2..8 bits") {
  struct Case {
    int64_t m, n, k;
    int32_t x_zero_point;
    bool has_relu, is_float;
    int bits;
    Fill fill;
  };
  const Case cases[] = {
      {1, 10, 3136, 3, false, false, 8, Fill::random},
      {256, 128, 3136, 128, true, false, 8, Fill::random},
      {97, 10, 128, 0, false, true, 8, Fill::random},
      {5, 7, 9, 255, true, false, 4, Fill::random},
      {300, 33, 61, 17, false, false, 2, Fill::random},
      {64, 20, 500, 255, false, false, 8, Fill::extreme_positive},
      {64, 20, 500, 0, true, false, 8, Fill::extreme_negative},
  };
  Generator g(2);
  for (const Case& c : cases) {
    const std::vector<uint8_t> x = activations(c.m * c.k, c.fill, g);
    const std::vector<int8_t> w = weights(c.n * c.k, c.fill, g);
    const OutputStage stage = stage_for(c.n, c.k, g, c.has_relu, c.is_float, c.bits);
    std::vector<int32_t> acc(c.m * c.n);
    reference::linear_accumulate(acc.data(), x.data(), w.data(), c.m, c.n, c.k, c.x_zero_point);
    std::vector<uint8_t> expected(c.m * c.n);
    std::vector<float> expected_float(c.m * c.n);
    if (c.is_float)
      reference::dequantize_accumulators(expected_float.data(), acc.data(), c.m, c.n, stage);
    else
      reference::requantize(expected.data(), acc.data(), c.m, c.n, stage);
    for (Isa isa : supported_isas()) {
      fast::LinearLayer layer(w.data(), c.n, c.k, c.x_zero_point, stage, isa);
      CAPTURE(isa_name(isa));
      INFO("m ", c.m, " n ", c.n, " k ", c.k);
      if (c.is_float) {
        std::vector<float> y(c.m * c.n);
        layer.run(y.data(), x.data(), c.m);
        CHECK(y == expected_float);
      } else {
        std::vector<uint8_t> y(c.m * c.n);
        layer.run(y.data(), x.data(), c.m);
        CHECK(count_differences(y, expected) == 0);
        CHECK(*std::max_element(y.begin(), y.end()) <= (1 << c.bits) - 1);
      }
    }
  }
}

TEST_CASE(
    "int8 conv2d: fast equals reference on every instruction set (grouped, depthwise, strided, padded)") {
  struct Case {
    const char* name;
    Conv2dShape shape;
    int32_t x_zero_point;
    bool has_relu;
    Fill fill;
  };
  const Case cases[] = {
      {"lenet conv1",
       {.batch = 3,
        .in_channels = 1,
        .in_height = 28,
        .in_width = 28,
        .out_channels = 32,
        .kernel_height = 5,
        .kernel_width = 5,
        .padding_height = 2,
        .padding_width = 2},
       128,
       true,
       Fill::random},
      {"lenet conv2",
       {.batch = 2,
        .in_channels = 32,
        .in_height = 14,
        .in_width = 14,
        .out_channels = 64,
        .kernel_height = 5,
        .kernel_width = 5,
        .padding_height = 2,
        .padding_width = 2},
       7,
       true,
       Fill::random},
      {"jermmy groups 20",
       {.batch = 2,
        .in_channels = 40,
        .in_height = 13,
        .in_width = 13,
        .out_channels = 40,
        .kernel_height = 3,
        .kernel_width = 3,
        .groups = 20},
       0,
       true,
       Fill::random},
      {"depthwise s2 p1",
       {.batch = 2,
        .in_channels = 24,
        .in_height = 9,
        .in_width = 9,
        .out_channels = 24,
        .kernel_height = 3,
        .kernel_width = 3,
        .stride_height = 2,
        .stride_width = 2,
        .padding_height = 1,
        .padding_width = 1,
        .groups = 24},
       90,
       false,
       Fill::random},
      {"groups 2 wide (per-group GEMMs)",
       {.batch = 2,
        .in_channels = 64,
        .in_height = 6,
        .in_width = 6,
        .out_channels = 64,
        .kernel_height = 3,
        .kernel_width = 3,
        .padding_height = 1,
        .padding_width = 1,
        .groups = 2},
       200,
       false,
       Fill::random},
      {"pointwise",
       {.batch = 4,
        .in_channels = 16,
        .in_height = 7,
        .in_width = 7,
        .out_channels = 32,
        .kernel_height = 1,
        .kernel_width = 1},
       33,
       false,
       Fill::random},
      {"pointwise s2, odd channels",
       {.batch = 3,
        .in_channels = 13,
        .in_height = 8,
        .in_width = 8,
        .out_channels = 70,
        .kernel_height = 1,
        .kernel_width = 1,
        .stride_height = 2,
        .stride_width = 2},
       1,
       true,
       Fill::random},
      {"dilated rectangular",
       {.batch = 2,
        .in_channels = 5,
        .in_height = 11,
        .in_width = 9,
        .out_channels = 7,
        .kernel_height = 3,
        .kernel_width = 2,
        .padding_height = 2,
        .padding_width = 1,
        .dilation_height = 2,
        .dilation_width = 3},
       250,
       false,
       Fill::random},
      {"extremes, full range",
       {.batch = 2,
        .in_channels = 16,
        .in_height = 6,
        .in_width = 6,
        .out_channels = 17,
        .kernel_height = 3,
        .kernel_width = 3,
        .padding_height = 1,
        .padding_width = 1},
       0,
       false,
       Fill::extreme_positive},
      {"extremes, negative weights",
       {.batch = 2,
        .in_channels = 16,
        .in_height = 6,
        .in_width = 6,
        .out_channels = 17,
        .kernel_height = 3,
        .kernel_width = 3},
       255,
       true,
       Fill::extreme_negative},
  };
  Generator g(3);
  for (const Case& c : cases) {
    const Conv2dShape& s = c.shape;
    const int64_t k = s.in_channels / s.groups * s.kernel_height * s.kernel_width;
    const std::vector<uint8_t> x = activations(s.batch * s.in_height * s.in_width * s.in_channels, c.fill, g);
    const std::vector<int8_t> w = weights(s.out_channels * k, c.fill, g);
    const int64_t rows = s.batch * s.out_height() * s.out_width();
    std::vector<int32_t> acc(rows * s.out_channels);
    reference::conv2d_accumulate(acc.data(), x.data(), w.data(), s, c.x_zero_point);
    for (bool is_float : {false, true}) {
      const OutputStage stage = stage_for(s.out_channels, k, g, c.has_relu, is_float);
      std::vector<uint8_t> expected(rows * s.out_channels);
      std::vector<float> expected_float(rows * s.out_channels);
      if (is_float)
        reference::dequantize_accumulators(expected_float.data(), acc.data(), rows, s.out_channels, stage);
      else
        reference::requantize(expected.data(), acc.data(), rows, s.out_channels, stage);
      for (Isa isa : supported_isas()) {
        fast::Conv2dLayer layer(w.data(), s, c.x_zero_point, stage, isa);
        CAPTURE(c.name);
        CAPTURE(isa_name(isa));
        CAPTURE(is_float);
        if (is_float) {
          std::vector<float> y(expected_float.size());
          layer.run(y.data(), x.data(), s.batch);
          CHECK(y == expected_float);
        } else {
          std::vector<uint8_t> y(expected.size());
          layer.run(y.data(), x.data(), s.batch);
          CHECK(count_differences(y, expected) == 0);
        }
      }
    }
  }
}

TEST_CASE("int8 elementwise ops and pools: fast equals reference past the parallel grain") {
  Generator g(4);
  const int64_t n = 3 * kParallelGrain + 77;
  const ActivationQuant pa{.scale = 0.05f, .zero_point = 30}, pb{.scale = 0.11f, .zero_point = 200},
      py{.scale = 0.07f, .zero_point = 128},
      narrow{.scale = 0.3f, .zero_point = 3, .quant_min = 0, .quant_max = 15};
  std::vector<float> x(n);
  for (float& v : x) v = g.uniform(-12, 12);
  x[0] = 1e30f, x[1] = -1e30f, x[2] = 0.035f;  // clamps and a tie at scale 0.07
  for (const ActivationQuant& p : {py, narrow}) {
    std::vector<uint8_t> q(n), fast_q(n);
    reference::quantize(q.data(), x.data(), n, p);
    fast::quantize(fast_q.data(), x.data(), n, p);
    CHECK(count_differences(q, fast_q) == 0);
    std::vector<float> back(n), fast_back(n);
    reference::dequantize(back.data(), q.data(), n, p);
    fast::dequantize(fast_back.data(), q.data(), n, p);
    CHECK(back == fast_back);
  }
  const std::vector<uint8_t> a = activations(n, Fill::random, g), b = activations(n, Fill::random, g);
  for (bool has_relu : {false, true}) {
    std::vector<uint8_t> y(n), fast_y(n);
    reference::add(y.data(), a.data(), b.data(), n, pa, pb, py, has_relu);
    fast::add(fast_y.data(), a.data(), b.data(), n, pa, pb, py, has_relu);
    CHECK(count_differences(y, fast_y) == 0);
  }
  std::vector<uint8_t> y(n), fast_y(n);
  reference::relu(y.data(), a.data(), n, 77);
  fast::relu(fast_y.data(), a.data(), n, 77);
  CHECK(count_differences(y, fast_y) == 0);

  struct PoolCase {
    PoolShape shape;
    bool ceil_mode;
  };
  // batch, channels, input H×W, kernel H×W, stride H×W, padding H×W
  auto pool = [](int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                 int64_t ph, int64_t pw) {
    return PoolShape{.batch = n,
                     .channels = c,
                     .in_height = h,
                     .in_width = w,
                     .kernel_height = kh,
                     .kernel_width = kw,
                     .stride_height = sh,
                     .stride_width = sw,
                     .padding_height = ph,
                     .padding_width = pw};
  };
  const PoolCase pools[] = {
      {pool(64, 32, 28, 28, 2, 2, 2, 2, 0, 0), false},  // the 2x2 path, past the grain
      {pool(3, 70, 9, 9, 3, 3, 2, 2, 1, 1), false},
      {pool(2, 5, 7, 8, 3, 2, 2, 3, 1, 0), true},
  };
  for (const PoolCase& c : pools) {
    PoolShape s = c.shape;
    s.out_height =
        pool_output_size(s.in_height, s.kernel_height, s.stride_height, s.padding_height, 1, c.ceil_mode);
    s.out_width =
        pool_output_size(s.in_width, s.kernel_width, s.stride_width, s.padding_width, 1, c.ceil_mode);
    const std::vector<uint8_t> in =
        activations(s.batch * s.in_height * s.in_width * s.channels, Fill::random, g);
    const int64_t out_count = s.batch * s.out_height * s.out_width * s.channels;
    std::vector<uint8_t> ref(out_count), fst(out_count);
    reference::max_pool2d(ref.data(), in.data(), s);
    fast::max_pool2d(fst.data(), in.data(), s);
    CHECK(count_differences(ref, fst) == 0);
    for (AvgPoolOptions options : {AvgPoolOptions{}, AvgPoolOptions{.count_include_pad = false},
                                   AvgPoolOptions{.divisor_override = 5}}) {
      reference::avg_pool2d(ref.data(), in.data(), s, options, 131);
      fast::avg_pool2d(fst.data(), in.data(), s, options, 131);
      CHECK(count_differences(ref, fst) == 0);
    }
    for (int64_t side : {1, 2, 3}) {
      PoolShape adaptive = s;
      adaptive.out_height = side, adaptive.out_width = side + 1;
      std::vector<uint8_t> r(s.batch * side * (side + 1) * s.channels), f(r.size());
      reference::adaptive_avg_pool2d(r.data(), in.data(), adaptive, 9);
      fast::adaptive_avg_pool2d(f.data(), in.data(), adaptive, 9);
      CHECK(count_differences(r, f) == 0);
    }
  }
}
