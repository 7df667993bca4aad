#include <doctest/doctest.h>

#include <algorithm>

#include "core/autograd.h"
#include "core/ops.h"

using namespace qforge;

TEST_CASE("backward from a scalar computes a chain of gradients") {
  Tensor x = Tensor::from_vector({3}, {1, 2, 3}).set_requires_grad(true);
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  y.backward();
  CHECK(x.grad().to_vector() == std::vector<float>{2, 4, 6});
}

TEST_CASE("gradients accumulate when a tensor is used twice and across backward calls") {
  Tensor x = Tensor::from_vector({2}, {1, -2}).set_requires_grad(true);
  Tensor y = sum(add(mul(x, 3.0f), mul(x, x)));  // dy/dx = 3 + 2x
  y.backward();
  CHECK(x.grad().to_vector() == std::vector<float>{5, -1});
  sum(x).backward();  // accumulates: +1
  CHECK(x.grad().to_vector() == std::vector<float>{6, 0});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a diamond graph sums both paths") {
  Tensor x = Tensor::from_vector({1}, {2}).set_requires_grad(true);
  Tensor a = exp(x);
  Tensor y = sum(add(mul(a, a), a));  // e^{2x} + e^x -> 2e^{2x} + e^x
  y.backward();
  CHECK(x.grad().item() == doctest::Approx(2 * std::exp(4.0) + std::exp(2.0)).epsilon(1e-6));
}

TEST_CASE("shared gradient tensors are not corrupted by in-place accumulation") {
  // add hands the same gradient to both inputs; b's slot is later accumulated in place.
  Tensor a = Tensor::from_vector({2}, {1, 1}).set_requires_grad(true);
  Tensor w = Tensor::from_vector({2}, {1, 1}).set_requires_grad(true);
  Tensor b = mul(w, 2.0f);
  Tensor y = sum(add(add(a, b), mul(b, 5.0f)));  // dy/db = 6, dy/da = 1
  y.backward();
  CHECK(a.grad().to_vector() == std::vector<float>{1, 1});
  CHECK(w.grad().to_vector() == std::vector<float>{12, 12});
}

TEST_CASE("a gradient several nodes share is copied before one adds into it") {
  // add hands its gradient to both inputs, so pending slots share one tensor (autograd.cpp's
  // accumulate). Here the outer add's gradient reaches c and s; s's reaches p and q; then
  // c's adds into q's slot while p's and c's own still hold the shared tensor.
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad(true);
  Tensor p = mul(x, 2.0f), q = mul(x, 3.0f);
  Tensor t = mul(p, 4.0f);
  Tensor c = add(q, t), s = add(p, q);
  sum(add(c, s)).backward();  // dy/dp = 1 + 4, dy/dq = 2: dy/dx = 5·2 + 2·3
  CHECK(x.grad().to_vector() == std::vector<float>{16, 16});
}

TEST_CASE("a leaf's gradient owns its storage") {
  // add_scalar passes the given gradient through unchanged; an optimizer writing into
  // x.grad in place must not change the caller's tensor.
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad(true);
  const Tensor given = Tensor::from_vector({2}, {1, 10});
  add(x, 1.0f).backward(given);
  Tensor grad = x.grad();
  grad.data()[0] = 7;
  CHECK(given.to_vector() == std::vector<float>{1, 10});
}

TEST_CASE("backward with an explicit gradient") {
  Tensor x = Tensor::from_vector({2}, {1, 2}).set_requires_grad(true);
  Tensor y = mul(x, 3.0f);
  y.backward(Tensor::from_vector({2}, {1, 10}));
  CHECK(x.grad().to_vector() == std::vector<float>{3, 30});
}

TEST_CASE("no-grad guard records nothing") {
  Tensor x = Tensor::ones({2}).set_requires_grad(true);
  {
    NoGradGuard guard;
    Tensor y = mul(x, 2.0f);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  CHECK(mul(x, 2.0f).requires_grad());
}

TEST_CASE("autograd errors are clear") {
  Tensor x = Tensor::ones({2}).set_requires_grad(true);
  Tensor y = mul(x, 2.0f);
  CHECK_THROWS_WITH_AS(y.backward(),
                       "backward: gradient can be implicit only for a one-element tensor, got shape [2]; "
                       "pass the gradient explicitly",
                       Error);
  CHECK_THROWS_WITH_AS(
      sum(Tensor::ones({2})).backward(),
      "backward: tensor of shape [] does not require grad (no input of the graph has requires_grad set)",
      Error);
  Tensor z = sum(y);
  z.backward();
  CHECK_THROWS_WITH_AS(z.backward(),
                       "backward: the graph through 'sum' was already freed by an earlier backward; pass "
                       "retain_graph=true to the first backward to run it twice",
                       Error);
  Tensor w = sum(mul(x, 2.0f));
  w.backward(/*retain_graph=*/true);
  w.backward();
  CHECK(x.grad().to_vector() == std::vector<float>{6, 6});  // 2 from z, 2+2 from w
  CHECK_THROWS_AS(y.set_requires_grad(false), Error);
  CHECK_THROWS_AS(y.backward(Tensor::ones({3})), Error);
}

namespace {
// Remembers each reported leaf and a copy of its gradient at the moment of the report.
struct RecordingHook : GradientReadyHook {
  std::vector<const TensorImpl*> order;
  std::vector<Tensor> grads_then;
  void gradient_ready(const Tensor& leaf) override {
    order.push_back(leaf.impl());
    grads_then.push_back(leaf.grad().defined() ? leaf.grad().clone() : Tensor());
  }
};
}  // namespace

TEST_CASE("gradient-ready hooks: each leaf is reported once, last layer first, with its final gradient") {
  // A two-layer chain: y = sum(w2 * relu(w1 * x + b1)), w1 used twice (also in a side term).
  Tensor x = Tensor::from_vector({3}, {1, -2, 3});
  Tensor w1 = Tensor::from_vector({3}, {0.5f, -1, 2}).set_requires_grad(true);
  Tensor b1 = Tensor::from_vector({3}, {0.1f, 0.2f, -0.3f}).set_requires_grad(true);
  Tensor w2 = Tensor::from_vector({3}, {2, 3, -1}).set_requires_grad(true);
  Tensor unused = Tensor::from_vector({1}, {1}).set_requires_grad(true);
  Tensor hidden = relu(add(mul(w1, x), b1));
  Tensor y = add(sum(mul(w2, hidden)), sum(mul(w1, w1)));
  RecordingHook hook;
  {
    OnGradientReady scope(hook);
    y.backward();
  }
  REQUIRE(hook.order.size() == 3);  // `unused` is in no node of the graph: not reported
  CHECK(hook.order.front() == w2.impl());
  CHECK(std::count(hook.order.begin(), hook.order.end(), w1.impl()) == 1);
  CHECK(std::find(hook.order.begin(), hook.order.end(), unused.impl()) == hook.order.end());
  for (std::size_t i = 0; i < hook.order.size(); ++i) {
    const Tensor& leaf = hook.order[i] == w1.impl() ? w1 : hook.order[i] == b1.impl() ? b1 : w2;
    CHECK(hook.grads_then[i].to_vector() == leaf.grad().to_vector());  // final when reported
  }
  // Outside the scope nothing is reported.
  w1.zero_grad();
  sum(mul(w1, w1)).backward();
  CHECK(hook.order.size() == 3);
}

TEST_CASE("gradient-ready hooks: a leaf no gradient reaches is reported without one") {
  Tensor w = Tensor::from_vector({2}, {1, 2}).set_requires_grad(true);
  Tensor v = Tensor::from_vector({2}, {3, 4}).set_requires_grad(true);
  // An op whose backward gives its input no gradient (as a rounding op without STE would).
  Tensor blocked = record(mul(w, 1.0f).detach(), "blocked", {mul(w, 1.0f)},
                          [](const Tensor&, const Node&) { return std::vector<Tensor>{Tensor()}; });
  Tensor y = sum(add(blocked, v));
  RecordingHook hook;
  OnGradientReady scope(hook);
  y.backward();
  REQUIRE(hook.order.size() == 2);
  const auto w_at = std::find(hook.order.begin(), hook.order.end(), w.impl()) - hook.order.begin();
  REQUIRE(w_at < 2);
  CHECK_FALSE(hook.grads_then[static_cast<std::size_t>(w_at)].defined());
  CHECK_FALSE(w.grad().defined());
  CHECK(v.grad().to_vector() == std::vector<float>{1, 1});
}
