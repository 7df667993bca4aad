// Finite-difference gradient checks for every differentiable core op: odd sizes,
// broadcasting, stride > 1, padding, dilation, groups. One line per case.
#include <doctest/doctest.h>

#include "core/kernels/gemm.h"
#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace qforge;
using qforge::testing::check_gradients;
using qforge::testing::distinct_leaf;
using qforge::testing::random_leaf;
using Inputs = std::vector<Tensor>;

TEST_CASE("gradients: arithmetic with broadcasting") {
  auto a = [] { return random_leaf({3, 1, 5}, 1); };
  auto b = [] { return random_leaf({4, 5}, 2); };
  CHECK(check_gradients([](const Inputs& in) { return add(in[0], in[1]); }, {a(), b()}));
  CHECK(check_gradients([](const Inputs& in) { return sub(in[0], in[1]); }, {a(), b()}));
  CHECK(check_gradients([](const Inputs& in) { return mul(in[0], in[1]); }, {a(), b()}));
  CHECK(check_gradients([](const Inputs& in) { return div(in[0], in[1]); },
                        {a(), random_leaf({4, 5}, 3, 0.5f, 2.0f)}));
  CHECK(check_gradients([](const Inputs& in) { return mul(in[0], in[1]); },
                        {random_leaf({2, 3}, 4), random_leaf({}, 5)}));
  CHECK(check_gradients([](const Inputs& in) { return add(in[0], in[1]); },
                        {random_leaf({3}, 6), random_leaf({2, 1}, 7)}));
  CHECK(
      check_gradients([](const Inputs& in) { return add(mul(in[0], 2.5f), -1.0f); }, {random_leaf({7}, 8)}));
  CHECK(check_gradients([](const Inputs& in) { return neg(in[0]); }, {random_leaf({7}, 9)}));
}

TEST_CASE("gradients: pointwise functions") {
  CHECK(check_gradients([](const Inputs& in) { return exp(in[0]); }, {random_leaf({3, 5}, 1)}));
  CHECK(check_gradients([](const Inputs& in) { return log(in[0]); }, {random_leaf({3, 5}, 2, 0.5f, 3.0f)}));
  CHECK(check_gradients([](const Inputs& in) { return pow(in[0], 2.5f); },
                        {random_leaf({3, 5}, 3, 0.5f, 2.0f)}));
  CHECK(check_gradients([](const Inputs& in) { return pow(in[0], 3.0f); }, {random_leaf({9}, 4)}));
  CHECK(check_gradients([](const Inputs& in) { return sqrt(in[0]); }, {random_leaf({9}, 5, 0.5f, 2.0f)}));
  CHECK(check_gradients([](const Inputs& in) { return sigmoid(in[0]); }, {random_leaf({3, 5}, 6, -3, 3)}));
  CHECK(check_gradients([](const Inputs& in) { return tanh(in[0]); }, {random_leaf({3, 5}, 7, -2, 2)}));
  // Kinked functions on a grid whose values stay clear of the kinks by more than a step.
  CHECK(check_gradients([](const Inputs& in) { return relu(in[0]); }, {distinct_leaf({5, 7}, 8, 0.05f)}));
  CHECK(check_gradients([](const Inputs& in) { return clamp(in[0], -0.3f, 0.25f); },
                        {distinct_leaf({5, 7}, 9, 0.05f)}));
}

TEST_CASE("gradients: reductions") {
  CHECK(check_gradients([](const Inputs& in) { return sum(in[0]); }, {random_leaf({3, 4, 5}, 1)}));
  CHECK(check_gradients([](const Inputs& in) { return mean(in[0]); }, {random_leaf({3, 4, 5}, 2)}));
  for (int64_t axis : {0, 1, 2, -1}) {
    CAPTURE(axis);
    CHECK(
        check_gradients([axis](const Inputs& in) { return sum(in[0], axis); }, {random_leaf({3, 4, 5}, 3)}));
    CHECK(check_gradients([axis](const Inputs& in) { return mean(in[0], axis, true); },
                          {random_leaf({3, 4, 5}, 4)}));
    CHECK(check_gradients([axis](const Inputs& in) { return max(in[0], axis); },
                          {distinct_leaf({3, 4, 5}, 5)}));
  }
  CHECK(check_gradients([](const Inputs& in) { return max(in[0]); }, {distinct_leaf({3, 7}, 6)}));
}

TEST_CASE("gradients: shape ops") {
  CHECK(check_gradients(
      [](const Inputs& in) {
        return mul(reshape(in[0], {5, -1}), 2.0f);
      },
      {random_leaf({3, 5}, 1)}));
  CHECK(check_gradients([](const Inputs& in) { return flatten(in[0]); }, {random_leaf({2, 3, 2, 3}, 2)}));
  CHECK(
      check_gradients([](const Inputs& in) { return transpose(in[0], 0, 2); }, {random_leaf({2, 3, 5}, 3)}));
  CHECK(check_gradients(
      [](const Inputs& in) {
        return permute(in[0], {2, 0, 3, 1});
      },
      {random_leaf({2, 3, 4, 5}, 4)}));
  CHECK(check_gradients(
      [](const Inputs& in) {
        return cat({in[0], in[1], in[0]}, 1);
      },
      {random_leaf({2, 3, 2}, 5), random_leaf({2, 1, 2}, 6)}));
  CHECK(
      check_gradients([](const Inputs& in) { return slice(in[0], 1, 1, -1); }, {random_leaf({3, 5, 2}, 7)}));
  // Many slices of one tensor, overlapping, of a leaf and of an op's output: each adds its
  // rows into the gradient so far (Node::add_into), which an add shares between two nodes.
  CHECK(check_gradients(
      [](const Inputs& in) {
        const Tensor y = exp(in[0]), shared = add(y, in[0]);
        std::vector<Tensor> parts;
        for (int64_t t = 0; t < 5; ++t)
          parts.push_back(mul(slice(t % 2 ? y : in[0], 1, t, t + 1), static_cast<float>(t + 1)));
        parts.push_back(slice(y, 1, 1, 4));
        parts.push_back(slice(shared, 1, 0, 2));
        parts.push_back(mul(slice(shared, 1, 3, 5), slice(in[0], 1, 0, 2)));
        return cat(parts, 1);
      },
      {random_leaf({3, 5, 2}, 9)}));
  // The slice adds into z's gradient while q's, not yet used, shares its storage (both came
  // from one add): the slice must copy it first.
  CHECK(check_gradients(
      [](const Inputs& in) {
        const Tensor z = exp(in[0]), q = mul(in[0], 3.0f);
        return add(z, add(q, slice(z, 1, 1, 2)));
      },
      {random_leaf({3, 5, 2}, 10)}));
  Tensor indices = Tensor::from_data<int32_t>({4}, std::vector<int32_t>{2, 0, 2, 3});
  CHECK(check_gradients([indices](const Inputs& in) { return index_select(in[0], 1, indices); },
                        {random_leaf({3, 5, 2}, 8)}));
}

TEST_CASE("gradients: matmul and linear") {
  CHECK(check_gradients([](const Inputs& in) { return matmul(in[0], in[1]); },
                        {random_leaf({3, 4}, 1), random_leaf({4, 5}, 2)}));
  CHECK(check_gradients([](const Inputs& in) { return matmul(in[0], in[1]); },
                        {random_leaf({2, 3, 4}, 3), random_leaf({2, 4, 5}, 4)}));
  CHECK(check_gradients([](const Inputs& in) { return matmul(in[0], in[1]); },
                        {random_leaf({2, 3, 4}, 5), random_leaf({4, 5}, 6)}));
  CHECK(check_gradients([](const Inputs& in) { return linear(in[0], in[1], in[2]); },
                        {random_leaf({5, 7}, 7), random_leaf({3, 7}, 8), random_leaf({3}, 9)}));
  CHECK(check_gradients([](const Inputs& in) { return linear(in[0], in[1]); },
                        {random_leaf({2, 3, 7}, 10), random_leaf({4, 7}, 11)}));
}

TEST_CASE("gradients: conv2d on the reference kernels") {
  struct Case {
    Shape input, weight;
    Conv2dOptions options;
    bool has_bias;
  };
  const Case cases[] = {
      {{2, 3, 7, 6}, {4, 3, 3, 3}, {}, true},
      {{1, 2, 9, 8}, {3, 2, 3, 2}, {2, 3, 1, 0, 1, 1, 1}, true},              // stride 2x3, padding 1x0
      {{2, 2, 9, 9}, {2, 2, 3, 3}, Conv2dOptions::square(1, 2, 2), false},    // dilation 2, padding 2
      {{1, 4, 6, 5}, {6, 2, 3, 3}, Conv2dOptions::square(1, 1, 1, 2), true},  // groups 2
      {{2, 4, 5, 5}, {4, 1, 3, 3}, Conv2dOptions::square(2, 1, 1, 4), true},  // depthwise, stride 2
      {{1, 3, 5, 7}, {2, 3, 1, 1}, {}, true},                                 // 1x1
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    CAPTURE(c.weight);
    Inputs inputs{random_leaf(c.input, 1), random_leaf(c.weight, 2)};
    if (c.has_bias) inputs.push_back(random_leaf({c.weight[0]}, 3));
    Conv2dOptions options = c.options;
    CHECK(check_gradients(
        [options](const Inputs& in) {
          return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), options, Backend::reference);
        },
        inputs));
  }
}

TEST_CASE("gradients: pooling") {
  CHECK(check_gradients([](const Inputs& in) { return max_pool2d(in[0], Pool2dOptions::square(2)); },
                        {distinct_leaf({2, 3, 6, 7}, 1)}));
  CHECK(check_gradients([](const Inputs& in) { return max_pool2d(in[0], Pool2dOptions::square(3, 2, 1)); },
                        {distinct_leaf({1, 2, 7, 7}, 2)}));
  CHECK(check_gradients([](const Inputs& in) { return max_pool2d(in[0], Pool2dOptions::square(2, 1, 0, 2)); },
                        {distinct_leaf({1, 2, 6, 5}, 3)}));
  CHECK(check_gradients([](const Inputs& in) { return avg_pool2d(in[0], Pool2dOptions::square(2)); },
                        {random_leaf({2, 3, 5, 7}, 4)}));
  CHECK(check_gradients([](const Inputs& in) { return avg_pool2d(in[0], Pool2dOptions::square(3, 2, 1)); },
                        {random_leaf({1, 2, 7, 6}, 5)}));
  CHECK(check_gradients(
      [](const Inputs& in) { return avg_pool2d(in[0], Pool2dOptions::square(3, 2, 1), false); },
      {random_leaf({1, 2, 7, 6}, 6)}));
  CHECK(check_gradients([](const Inputs& in) { return adaptive_avg_pool2d(in[0], 3, 2); },
                        {random_leaf({2, 2, 7, 5}, 7)}));
  CHECK(check_gradients([](const Inputs& in) { return adaptive_avg_pool2d(in[0], 1, 1); },
                        {random_leaf({2, 3, 4, 4}, 8)}));
}

TEST_CASE("gradients: batch_norm in training and evaluation") {
  for (bool is_training : {true, false}) {
    for (Shape shape : {Shape{4, 3, 3, 5}, Shape{6, 3}}) {
      CAPTURE(is_training);
      CAPTURE(shape);
      Tensor running_mean = Tensor::from_vector({3}, {0.1f, -0.2f, 0.3f});
      Tensor running_var = Tensor::from_vector({3}, {0.5f, 1.5f, 2.0f});
      CHECK(check_gradients(
          [=](const Inputs& in) mutable {
            return batch_norm(in[0], running_mean, running_var, in[1], in[2], is_training);
          },
          {random_leaf(shape, 1, -2, 2), random_leaf({3}, 2, 0.5f, 1.5f), random_leaf({3}, 3)}));
    }
  }
  Tensor running_mean = Tensor::zeros({3}), running_var = Tensor::ones({3});
  CHECK(check_gradients(
      [&](const Inputs& in) {
        return batch_norm(in[0], running_mean, running_var, Tensor(), Tensor(), true);
      },
      {random_leaf({5, 3, 2, 2}, 4)}));
}

TEST_CASE("gradients: affine_batch_norm in training and evaluation") {
  for (bool is_training : {true, false})
    for (bool has_shift : {true, false})
      for (Shape shape : {Shape{4, 3, 3, 5}, Shape{6, 3}}) {
        CAPTURE(is_training);
        CAPTURE(has_shift);
        CAPTURE(shape);
        Tensor running_mean = Tensor::from_vector({3}, {0.1f, -0.2f, 0.3f});
        Tensor running_var = Tensor::from_vector({3}, {0.5f, 1.5f, 2.0f});
        std::vector<Tensor> inputs{random_leaf(shape, 1, -2, 2), random_leaf({3}, 2, 0.5f, 1.5f),
                                   random_leaf({3}, 3), random_leaf({3}, 4, 0.5f, 2.0f)};
        if (has_shift) inputs.push_back(random_leaf({3}, 5));
        CHECK(check_gradients(
            [=](const Inputs& in) mutable {
              return affine_batch_norm(in[0], in[3], has_shift ? in[4] : Tensor(), running_mean, running_var,
                                       in[1], in[2], is_training);
            },
            inputs));
      }
}

TEST_CASE("affine_batch_norm equals channel_affine then batch_norm: values, statistics, gradients") {
  // Enough channels and values for both threads and the summation lanes' tails.
  for (bool is_training : {true, false}) {
    CAPTURE(is_training);
    const Shape shape{8, 16, 7, 9};
    Tensor x = random_leaf(shape, 11, -3, 3), gamma = random_leaf({16}, 12, 0.5f, 1.5f),
           beta = random_leaf({16}, 13), scale = random_leaf({16}, 14, 0.2f, 3.0f),
           shift = random_leaf({16}, 15);
    const Tensor g = random_leaf(shape, 16).detach();
    Tensor mean_a = random_leaf({16}, 17).detach(), var_a = random_leaf({16}, 18, 0.5f, 2.0f).detach();
    Tensor mean_b = mean_a.clone(), var_b = var_a.clone();
    auto run = [&](bool fused, Tensor& running_mean, Tensor& running_var) {
      for (Tensor* t : {&x, &gamma, &beta, &scale, &shift}) t->zero_grad();
      Tensor y = fused
                     ? affine_batch_norm(x, scale, shift, running_mean, running_var, gamma, beta, is_training)
                     : batch_norm(channel_affine(x, scale, shift), running_mean, running_var, gamma, beta,
                                  is_training);
      y.backward(g);
      return std::vector<Tensor>{y.detach(), x.grad(), gamma.grad(), beta.grad(), scale.grad(), shift.grad()};
    };
    const std::vector<Tensor> fused = run(true, mean_a, var_a), composed = run(false, mean_b, var_b);
    for (std::size_t i = 0; i < fused.size(); ++i) {
      CAPTURE(i);
      CHECK(qforge::testing::all_close(fused[i], composed[i], 1e-5, 1e-5));
    }
    CHECK(qforge::testing::all_close(mean_a, mean_b, 1e-6, 1e-7));
    CHECK(qforge::testing::all_close(var_a, var_b, 1e-6, 1e-7));
  }
}

TEST_CASE("batch_norm_relu equals batch_norm then relu: values, statistics, gradients") {
  for (bool is_training : {true, false})
    for (Shape shape : {Shape{8, 16, 7, 9}, Shape{6, 3}}) {
      CAPTURE(is_training);
      CAPTURE(shape);
      const int64_t channels = shape[1];
      Tensor x = random_leaf(shape, 21, -3, 3), gamma = random_leaf({channels}, 22, -1.5f, 1.5f),
             beta = random_leaf({channels}, 23);
      const Tensor g = random_leaf(shape, 24).detach();
      Tensor mean_a = random_leaf({channels}, 25).detach(),
             var_a = random_leaf({channels}, 26, 0.5f, 2.0f).detach();
      Tensor mean_b = mean_a.clone(), var_b = var_a.clone();
      auto run = [&](bool fused, Tensor& running_mean, Tensor& running_var) {
        for (Tensor* t : {&x, &gamma, &beta}) t->zero_grad();
        Tensor y = fused ? batch_norm_relu(x, running_mean, running_var, gamma, beta, is_training)
                         : relu(batch_norm(x, running_mean, running_var, gamma, beta, is_training));
        y.backward(g);
        return std::vector<Tensor>{y.detach(), x.grad(), gamma.grad(), beta.grad()};
      };
      const std::vector<Tensor> fused = run(true, mean_a, var_a), composed = run(false, mean_b, var_b);
      CHECK(fused[0].to_vector() == composed[0].to_vector());  // the same float operations
      for (std::size_t i = 1; i < fused.size(); ++i) {
        CAPTURE(i);
        CHECK(qforge::testing::all_close(fused[i], composed[i], 1e-5, 1e-6));
      }
      CHECK(mean_a.to_vector() == mean_b.to_vector());
      CHECK(var_a.to_vector() == var_b.to_vector());
    }
}

TEST_CASE("gradients: dropout with a fixed mask") {
  CHECK(check_gradients(
      [](const Inputs& in) {
        Generator generator(42);  // the same mask on every evaluation
        return dropout(in[0], 0.3f, true, generator);
      },
      {random_leaf({4, 9}, 1)}));
}

TEST_CASE("gradients: log_softmax and losses") {
  CHECK(check_gradients([](const Inputs& in) { return log_softmax(in[0], 1); },
                        {random_leaf({3, 5}, 1, -2, 2)}));
  CHECK(check_gradients([](const Inputs& in) { return log_softmax(in[0], 0); },
                        {random_leaf({4, 3, 2}, 2, -2, 2)}));
  Tensor targets = Tensor::from_data<int32_t>({4}, std::vector<int32_t>{0, 4, 2, 2});
  CHECK(check_gradients([targets](const Inputs& in) { return cross_entropy(in[0], targets); },
                        {random_leaf({4, 5}, 3, -2, 2)}));
  CHECK(check_gradients([targets](const Inputs& in) { return cross_entropy(in[0], targets, 0.1f); },
                        {random_leaf({4, 5}, 4, -2, 2)}));
  Tensor teacher = random_leaf({4, 5}, 7, -3, 3).detach();
  for (float temperature : {1.0f, 3.0f})
    CHECK(check_gradients([&](const Inputs& in) { return distillation_loss(in[0], teacher, temperature); },
                          {random_leaf({4, 5}, 8, -2, 2)}));
  CHECK(check_gradients([](const Inputs& in) { return mse_loss(in[0], in[1]); },
                        {random_leaf({3, 4}, 5), random_leaf({3, 4}, 6)}));
}

TEST_CASE("gradients: lstm_cell and lstm_layer") {
  CHECK(check_gradients([](const Inputs& in) { return lstm_cell(in[0], in[1]); },
                        {random_leaf({3, 4 * 5}, 1, -2, 2), random_leaf({3, 5}, 2)}));
  CHECK(check_gradients([](const Inputs& in) { return lstm_layer(in[0], in[1], in[2], in[3], in[4]); },
                        {random_leaf({2, 4, 4 * 3}, 3, -1.5f, 1.5f), random_leaf({12, 3}, 4),
                         random_leaf({12}, 5), random_leaf({2, 3}, 6), random_leaf({2, 3}, 7)}));
}

TEST_CASE("lstm_layer equals lstm_cell applied step by step") {
  Tensor projected = random_leaf({3, 5, 8}, 1), weight = random_leaf({8, 2}, 2), bias = random_leaf({8}, 3);
  Tensor h = random_leaf({3, 2}, 4), c = random_leaf({3, 2}, 5);
  Tensor fused = lstm_layer(projected, weight, bias, h, c);
  for (int64_t t = 0; t < 5; ++t) {
    Tensor gates = add(reshape(slice(projected, 1, t, t + 1), {3, 8}), linear(h, weight, bias));
    Tensor hc = lstm_cell(gates, c);
    h = slice(hc, 1, 0, 2), c = slice(hc, 1, 2, 4);
    CHECK(qforge::testing::all_close(reshape(slice(fused, 1, t, t + 1), {3, 4}), hc, 1e-5, 1e-6));
  }
}

TEST_CASE(
    "lstm_layer_inference equals the input projection and lstm_layer, to rounding, on any thread count") {
  // (B, T, in, H): one row; few rows (inputs projected ahead of the steps); a block of rows
  // per thread (B·4H at two parallel grains), once with odd sizes.
  const int64_t shapes[][4] = {{1, 6, 5, 3}, {3, 4, 7, 5}, {256, 3, 9, 64}, {130, 2, 28, 128}};
  uint64_t seed = 20;
  for (const auto& shape : shapes) {
    const int64_t batch = shape[0], steps = shape[1], in = shape[2], hidden = shape[3];
    CAPTURE(batch);
    CAPTURE(hidden);
    const Tensor x = random_leaf({batch, steps, in}, seed++, -2, 2);
    const Tensor w_ih = random_leaf({4 * hidden, in}, seed++),
                 w_hh = random_leaf({4 * hidden, hidden}, seed++);
    const Tensor b_ih = random_leaf({4 * hidden}, seed++), b_hh = random_leaf({4 * hidden}, seed++);
    const Tensor h0 = random_leaf({batch, hidden}, seed++), c0 = random_leaf({batch, hidden}, seed++, -3, 3);
    const Tensor expected = lstm_layer(linear(x, w_ih, b_ih), w_hh, b_hh, h0, c0);  // (B,T,2H) = [h | c]
    auto infer = [&] { return lstm_layer_inference(x, w_ih, w_hh, b_ih, b_hh, h0, c0); };
    const LstmLayerStates two = qforge::testing::with_threads(2, infer);
    const LstmLayerStates one = qforge::testing::with_threads(1, infer);
    CHECK(qforge::testing::all_close(two.h, slice(expected, 2, 0, hidden), 1e-5, 1e-6));
    const Tensor last_c =
        reshape(slice(slice(expected, 1, steps - 1, steps), 2, hidden, 2 * hidden), {batch, hidden});
    CHECK(qforge::testing::all_close(two.c, last_c, 1e-5, 1e-6));
    CHECK(one.h.to_vector() == two.h.to_vector());  // a row's floats do not depend on the threads
    CHECK(one.c.to_vector() == two.c.to_vector());
  }
  CHECK_THROWS_WITH(lstm_layer_inference(random_leaf({2, 3, 4}, 1), random_leaf({8, 5}, 2),
                                         random_leaf({8, 2}, 3), random_leaf({8}, 4), random_leaf({8}, 5),
                                         random_leaf({2, 2}, 6), random_leaf({2, 2}, 7)),
                    doctest::Contains("weight_ih (4H,in)"));
}

TEST_CASE("gradients: channel_affine") {
  CHECK(check_gradients([](const Inputs& in) { return channel_affine(in[0], in[1], in[2]); },
                        {random_leaf({2, 3, 4, 5}, 1), random_leaf({3}, 2), random_leaf({3}, 3)}));
  CHECK(check_gradients([](const Inputs& in) { return channel_affine(in[0], in[1], Tensor()); },
                        {random_leaf({3, 4}, 4), random_leaf({4}, 5)}));
}

TEST_CASE("kernels::gemm (oneDNN) equals the double-precision reference, every transpose, stride and shape") {
  Generator generator(11);
  // (m, n, k): tiny, odd, past oneDNN's register blocks and K panels, and the models' own
  // (lenet fc1 at batch 64, the LSTM's recurrent product, a conv's im2col).
  const int64_t shapes[][3] = {{1, 1, 1},       {5, 7, 9},     {17, 33, 65},  {64, 128, 3136},
                               {256, 512, 128}, {32, 784, 25}, {129, 47, 300}};
  const int64_t pad = 3;  // leading dimensions larger than the rows
  for (const auto& shape : shapes) {
    const int64_t m = shape[0], n = shape[1], k = shape[2];
    for (bool transpose_a : {false, true})
      for (bool transpose_b : {false, true})
        for (float beta : {0.0f, 0.5f}) {
          CAPTURE(m);
          CAPTURE(n);
          CAPTURE(k);
          CAPTURE(transpose_a);
          CAPTURE(transpose_b);
          CAPTURE(beta);
          const int64_t lda = (transpose_a ? m : k) + pad, ldb = (transpose_b ? k : n) + pad, ldc = n + pad;
          Tensor a = Tensor::randn({transpose_a ? k : m, lda}, generator);
          Tensor b = Tensor::randn({transpose_b ? n : k, ldb}, generator);
          Tensor c = Tensor::randn({m, ldc}, generator), expected = c.clone();
          kernels::gemm(transpose_a, transpose_b, m, n, k, 1.5f, a.data(), lda, b.data(), ldb, beta, c.data(),
                        ldc);
          kernels::gemm_reference(transpose_a, transpose_b, m, n, k, 1.5f, a.data(), lda, b.data(), ldb, beta,
                                  expected.data(), ldc);
          // float sums of k products of N(0,1) values: error grows like √k.
          CHECK(qforge::testing::all_close(c, expected, 1e-5, 2e-6 * std::sqrt(static_cast<double>(k)) * 3));
        }
  }
}
