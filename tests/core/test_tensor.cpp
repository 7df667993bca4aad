#include <doctest/doctest.h>

#include "core/ops.h"
#include "core/serialize.h"

using namespace qforge;

TEST_CASE("factories fill shape, dtype and values") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.numel() == 6);
  CHECK(z.dtype() == DType::f32);
  for (float v : z.to_vector()) CHECK(v == 0.0f);
  CHECK(Tensor::full({4}, 2.5f).to_vector() == std::vector<float>{2.5f, 2.5f, 2.5f, 2.5f});
  CHECK(Tensor::scalar(3.0f).item() == 3.0f);
  CHECK(Tensor::scalar(3.0f).dim() == 0);
  Tensor q = Tensor::zeros({5}, DType::s8);
  CHECK(q.dtype() == DType::s8);
  CHECK(q.data_as<int8_t>()[4] == 0);
  CHECK_THROWS_WITH_AS(q.data(), "tensor: data access as f32 on a tensor of dtype s8", Error);
  CHECK_THROWS_AS(Tensor::from_vector({2, 2}, {1, 2, 3}), Error);
  CHECK_THROWS_AS(Tensor::zeros({2}).item(), Error);
}

TEST_CASE("random factories are seeded and have the right moments") {
  Generator a(7), b(7);
  Tensor x = Tensor::randn({10000}, a);
  CHECK(x.to_vector() == Tensor::randn({10000}, b).to_vector());
  double total = 0, squares = 0;
  for (float v : x.to_vector()) total += v, squares += v * v;
  CHECK(total / 10000 == doctest::Approx(0.0).epsilon(0.03));
  CHECK(squares / 10000 == doctest::Approx(1.0).epsilon(0.05));
  Tensor w = Tensor::kaiming_uniform({64, 25}, 25, a);
  for (float v : w.to_vector()) CHECK((v >= -0.2f && v <= 0.2f));
}

TEST_CASE("views share storage; clone and detach behave as documented") {
  Tensor a = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = a;  // shallow
  b.data()[0] = 10;
  CHECK(a.data()[0] == 10);
  Tensor v = a.view({3, -1});
  CHECK(v.shape() == Shape{3, 2});
  CHECK(v.shares_storage(a));
  Tensor c = a.clone();
  c.data()[1] = -1;
  CHECK(a.data()[1] == 2);
  CHECK_FALSE(c.shares_storage(a));
  CHECK_THROWS_WITH_AS(a.view({4, 2}), "view: cannot reshape [2,3] (6 elements) into [4,2]", Error);
}

TEST_CASE("printing names shape, dtype and values") {
  Tensor a = Tensor::from_vector({2, 2}, {1, 2, 3, 4.5f});
  std::string text = a.to_string();
  CHECK(text.find("shape=[2,2]") != std::string::npos);
  CHECK(text.find("4.5") != std::string::npos);
  CHECK(Tensor().to_string() == "Tensor(undefined)");
}

TEST_CASE("thread count is settable") {
  int previous = num_threads();
  set_num_threads(1);
  CHECK(num_threads() == 1);
  set_num_threads(previous);
  CHECK_THROWS_AS(set_num_threads(0), Error);
}

TEST_CASE("errors name the op and the shapes") {
  CHECK_THROWS_WITH_AS(add(Tensor::zeros({2, 3}), Tensor::zeros({4})),
                       "add: shapes [2,3] and [4] cannot be broadcast (axis 1: 3 vs 4)", Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros({3, 28, 28}), Tensor::zeros({8, 3, 3, 3})),
                       "conv2d: expected 4-D input (N,C,H,W), got [3,28,28]", Error);
  CHECK_THROWS_WITH_AS(linear(Tensor::zeros({2, 5}), Tensor::zeros({3, 4})),
                       "linear: expected input (...,4) for weight [3,4], got [2,5]", Error);
  CHECK_THROWS_AS(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 2})), Error);
  Tensor targets = Tensor::from_data<int32_t>({2}, std::vector<int32_t>{0, 7});
  CHECK_THROWS_WITH_AS(cross_entropy(Tensor::zeros({2, 5}), targets),
                       "cross_entropy: target 7 of sample 1 is outside [0, 5)", Error);
}

TEST_CASE("tensors_under takes one prefixed section of a tensor map, prefix removed") {
  TensorMap tensors{{"model.0.weight", Tensor::ones({2})},
                    {"model.1.bias", Tensor::zeros({1})},
                    {"optimizer.0.momentum", Tensor::ones({2})},
                    {"modelx", Tensor::ones({1})}};
  TensorMap model = tensors_under(tensors, "model.");
  CHECK(model.size() == 2);
  CHECK(model.count("0.weight") == 1);
  CHECK(model.count("1.bias") == 1);
  CHECK(tensors_under(tensors, "optimizer.").count("0.momentum") == 1);
  CHECK(tensors_under(tensors, "absent.").empty());
}
