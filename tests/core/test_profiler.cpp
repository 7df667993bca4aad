// Note [Op profile]: the per-op profile `qforge bench` reports.
#include <doctest/doctest.h>

#include <chrono>

#include "core/flop_counter.h"
#include "core/ops.h"
#include "core/profiler.h"

using namespace qforge;

namespace {
const OpProfiler::Entry* find(const OpProfiler& profiler, const std::string& phase, const std::string& op) {
  for (const OpProfiler::Entry& e : profiler.entries())
    if (e.phase == phase && e.op == op) return &e;
  return nullptr;
}

void spin(double seconds) {
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
  }
}
}  // namespace

TEST_CASE("a scope keeps its own time, not its nested scopes', and counts calls per key") {
  OpProfiler profiler;
  const auto start = std::chrono::steady_clock::now();
  {
    const ProfileScope outer("forward", "outer");
    for (int i = 0; i < 3; ++i) {
      const ProfileScope inner("forward", "inner", [] { return std::string("[2,3]"); });
      spin(0.01);
    }
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const OpProfiler::Entry* outer = find(profiler, "forward", "outer");
  const OpProfiler::Entry* inner = find(profiler, "forward", "inner");
  REQUIRE(outer != nullptr);
  REQUIRE(inner != nullptr);
  CHECK(profiler.entries().size() == 2);
  CHECK(outer->calls == 1);
  CHECK(inner->calls == 3);
  CHECK(inner->shape == "[2,3]");
  CHECK(inner->seconds >= 0.03);
  CHECK(outer->seconds < inner->seconds / 3);  // the loop alone, not the spins
  CHECK(outer->seconds + inner->seconds <= total);
}

TEST_CASE("without a profiler a scope records nothing and never builds its key") {
  bool described = false;
  {
    const ProfileScope scope("forward", "op", [&] {
      described = true;
      return std::string();
    });
  }
  CHECK_FALSE(described);
  CHECK_FALSE(OpProfiler::active());
  OpProfiler profiler;
  CHECK(OpProfiler::active());
  CHECK(profiler.entries().empty());
}

TEST_CASE("a conv training step's flops land on forward, backward-data and backward-weights") {
  Generator generator(1);
  Tensor x = Tensor::randn({2, 3, 9, 9}, generator).set_requires_grad(true);
  Tensor w = Tensor::randn({4, 3, 3, 3}, generator).set_requires_grad(true);
  Tensor b = Tensor::randn({4}, generator).set_requires_grad(true);
  const double macs = 2.0 * 4 * 7 * 7 * 3 * 3 * 3;  // batch · out channels · out pixels · window
  FlopCounter counter;
  OpProfiler profiler;
  sum(relu(conv2d(x, w, b, Conv2dOptions{}))).backward();
  const OpProfiler::Entry* forward = find(profiler, "forward", "conv2d");
  const OpProfiler::Entry* data = find(profiler, "backward-data", "conv2d");
  const OpProfiler::Entry* weights = find(profiler, "backward-weights", "conv2d");
  REQUIRE(forward != nullptr);
  REQUIRE(data != nullptr);
  REQUIRE(weights != nullptr);
  CHECK(forward->shape == "[2,3,9,9] w[4,3,3,3]");
  CHECK(forward->flops == 2 * macs);
  CHECK(data->flops == 2 * macs);
  CHECK(weights->flops == 2 * macs);
  double profiled = 0;
  for (const OpProfiler::Entry& e : profiler.entries()) profiled += e.flops;
  CHECK(profiled == counter.flops());
  // Each node backward ran is a key of its own; relu's forward too.
  CHECK(find(profiler, "backward", "conv2d") != nullptr);
  CHECK(find(profiler, "backward", "relu") != nullptr);
  CHECK(find(profiler, "forward", "relu") != nullptr);
}
