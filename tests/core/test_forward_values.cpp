// Forward semantics against values printed by PyTorch 1.13 (the expressions are in
// each comment), plus the edge cases PyTorch defines: NaN propagation and ties in max
// pooling.
#include <doctest/doctest.h>

#include <cmath>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace qforge;
using qforge::testing::all_close;

namespace {
Tensor arange(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(i);
  return t;
}
}  // namespace

TEST_CASE("avg_pool2d and adaptive_avg_pool2d match PyTorch") {
  // F.avg_pool2d(arange(9).view(1,1,3,3), 2, 2, 1[, count_include_pad=False])
  CHECK(all_close(avg_pool2d(arange({1, 1, 3, 3}), Pool2dOptions::square(2, 2, 1)),
                  Tensor::from_vector({1, 1, 2, 2}, {0.0f, 0.75f, 2.25f, 6.0f})));
  CHECK(all_close(avg_pool2d(arange({1, 1, 3, 3}), Pool2dOptions::square(2, 2, 1), false),
                  Tensor::from_vector({1, 1, 2, 2}, {0.0f, 1.5f, 4.5f, 6.0f})));
  // F.adaptive_avg_pool2d(arange(25).view(1,1,5,5), 3)
  CHECK(all_close(adaptive_avg_pool2d(arange({1, 1, 5, 5}), 3, 3),
                  Tensor::from_vector({1, 1, 3, 3}, {3, 4.5f, 6, 10.5f, 12, 13.5f, 18, 19.5f, 21})));
}

TEST_CASE("max_pool2d propagates NaN and sends tied gradients to the first maximum") {
  for (int64_t kernel : {2, 3}) {
    CAPTURE(kernel);
    Tensor x = Tensor::zeros({1, 1, kernel, kernel});
    x.data()[1] = NAN;
    CHECK(std::isnan(max_pool2d(x, Pool2dOptions::square(kernel)).item()));
    Tensor tied = Tensor::full({1, 1, kernel, kernel}, 2.0f).set_requires_grad(true);
    sum(max_pool2d(tied, Pool2dOptions::square(kernel))).backward();
    CHECK(tied.grad().data()[0] == 1.0f);
    CHECK(sum(tied.grad()).item() == 1.0f);
  }
  // Last row/column of an odd input are dropped, as in PyTorch (floor mode).
  Tensor x = arange({1, 1, 5, 5});
  CHECK(
      all_close(max_pool2d(x, Pool2dOptions::square(2)), Tensor::from_vector({1, 1, 2, 2}, {6, 8, 16, 18})));
}

TEST_CASE("batch_norm normalizes with batch statistics and updates running ones like PyTorch") {
  // F.batch_norm(z, zeros(1), ones(1), ones(1), zeros(1), True, 0.1, 1e-5) for
  // z = [[[[1,2],[3,4]]],[[[5,0],[2,1]]]]
  Tensor z = Tensor::from_vector({2, 1, 2, 2}, {1, 2, 3, 4, 5, 0, 2, 1});
  Tensor running_mean = Tensor::zeros({1}), running_var = Tensor::ones({1});
  Tensor y = batch_norm(z, running_mean, running_var, Tensor::ones({1}), Tensor::zeros({1}), true);
  CHECK(all_close(y,
                  Tensor::from_vector({2, 1, 2, 2}, {-0.8006392f, -0.1601279f, 0.4803834f, 1.1208947f,
                                                     1.7614059f, -1.4411504f, -0.1601279f, -0.8006392f}),
                  1e-5, 1e-6));
  CHECK(running_mean.item() == doctest::Approx(0.225f).epsilon(1e-6));
  CHECK(running_var.item() == doctest::Approx(1.1785715f).epsilon(1e-6));
}

TEST_CASE("cross_entropy with and without label smoothing matches PyTorch") {
  // F.cross_entropy([[1,2,0.5],[0,-1,3]], [1,2][, label_smoothing=0.2])
  Tensor logits = Tensor::from_vector({2, 3}, {1, 2, 0.5f, 0, -1, 3});
  Tensor targets = Tensor::from_data<int32_t>({2}, std::vector<int32_t>{1, 2});
  CHECK(cross_entropy(logits, targets).item() == doctest::Approx(0.2651263f).epsilon(1e-6));
  CHECK(cross_entropy(logits, targets, 0.2f).item() == doctest::Approx(0.5817931f).epsilon(1e-6));
}

TEST_CASE("distillation_loss matches PyTorch's kl_div(log_softmax(s/T), softmax(t/T), 'batchmean')·T²") {
  Tensor student = Tensor::from_vector({2, 3}, {1, 2, 0.5f, 0, -1, 3});
  Tensor teacher = Tensor::from_vector({2, 3}, {0.5f, 2.5f, -1, 1, 0, 2});
  CHECK(distillation_loss(student, teacher, 1.0f).item() == doctest::Approx(0.2355274f).epsilon(1e-6));
  CHECK(distillation_loss(student, teacher, 4.0f).item() == doctest::Approx(0.4068358f).epsilon(1e-6));
  CHECK(distillation_loss(teacher, teacher, 2.0f).item() == doctest::Approx(0.0f));
}
