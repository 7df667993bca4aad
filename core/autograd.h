// The define-by-run autograd engine (Note [Autograd]).
//
// Each differentiable op computes its output, then calls `record` with its inputs
// and a backward closure. That makes one Node: the edges to the inputs and the local
// rule "given dL/d(output), return dL/d(each input)". `backward()` sorts the nodes
// reachable from the root (iteratively, only through tensors that require grad),
// walks them in reverse topological order and accumulates gradients. Leaves collect
// theirs in `.grad`. No higher-order gradients: backward closures run with grad off.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace qforge {

struct Node {
  using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output, const Node& node)>;

  const char* name = "";       // the op, for error messages
  std::vector<Tensor> inputs;  // edges; released with the graph
  BackwardFn backward;         // owns the saved tensors; released with the graph
  // Optional, for an op of one input whose gradient fills a small part of it (slice): adds
  // dL/d(input) into `input_gradient`, the input's whole gradient so far (zeros when none
  // has reached it yet), in place. backward then uses it instead of `backward`, so the T
  // slices of one tensor cost T slices, not T zero-filled copies of the whole tensor.
  using AddIntoFn = std::function<void(const Tensor& grad_output, Tensor& input_gradient)>;
  AddIntoFn add_into;
  bool is_released = false;

  // True when input i needs a gradient; backward closures skip the others.
  bool needs_grad(std::size_t i) const { return inputs[i].requires_grad(); }
};

// Grad mode is per thread, on by default; NoGradGuard turns it off for a scope.

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True outside every NoGradGuard (PyTorch's torch.is_grad_enabled()).
bool grad_mode_enabled();

// True when grad mode is on and any input requires grad: then the op must record.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);

// Attaches a Node to `output` when any input requires grad (and grad mode is on);
// returns `output` for chaining. Undefined inputs (an absent bias) are allowed.
Tensor record(Tensor output, const char* name, std::vector<Tensor> inputs, Node::BackwardFn backward);
// The same for an op of one input with an in-place rule as well (Node::add_into); `backward`
// stays the rule's plain statement.
Tensor record(Tensor output, const char* name, const Tensor& input, Node::BackwardFn backward,
              Node::AddIntoFn add_into);

// Note [Gradient-ready hooks]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Data parallelism sums each gradient across processes while backward is still running
// (train/distributed.h), so it must learn when a leaf's gradient is final: when every node
// of this backward with an edge to the leaf has run (or been skipped, no gradient flowing
// through it). backward counts those edges before it starts and tells the hook as each
// leaf's count reaches zero, in the order backward reaches them; the leaf's .grad is then
// what it will be when backward returns (undefined if no gradient reached it). Leaves no
// node of the graph uses are not reported. The hook is per thread and scoped, like grad mode.
class GradientReadyHook {
 public:
  virtual ~GradientReadyHook() = default;
  virtual void gradient_ready(const Tensor& leaf) = 0;
};

// While alive, every backward on this thread reports to `hook` (nested scopes restore).
class OnGradientReady {
 public:
  explicit OnGradientReady(GradientReadyHook& hook);
  ~OnGradientReady();
  OnGradientReady(const OnGradientReady&) = delete;
  OnGradientReady& operator=(const OnGradientReady&) = delete;

 private:
  GradientReadyHook* previous_;
};

// Implementation of Tensor::backward.
void run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph);

}  // namespace qforge
