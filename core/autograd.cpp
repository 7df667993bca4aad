#include "core/autograd.h"

#include <cassert>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/profiler.h"

namespace qforge {

namespace {
thread_local bool grad_enabled = true;
thread_local GradientReadyHook* ready_hook = nullptr;

// Adds `gradient` into `slot`, a node's pending gradient or a leaf's .grad. A closure may
// hand one tensor to several inputs (add returns grad_output for both), so a gradient's
// storage can be seen elsewhere. A pending slot then shares it and is copied on write: the
// first gradient added into it makes a new tensor (one pass, where a copy and an in-place
// add made two; it was a ResNet add's whole backward). A leaf's .grad, which optimizers
// and gradient hooks write in place, always owns its storage.
bool owns_storage(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.impl()->storage.use_count() == 1;
}

void accumulate(Tensor& slot, Tensor&& gradient, bool is_leaf) {
  if (!slot.defined())
    slot = (is_leaf && !owns_storage(gradient)) ? gradient.clone() : std::move(gradient);
  else if (owns_storage(slot))
    add_(slot, gradient);
  else
    slot = add(slot, gradient);
}
}  // namespace

OnGradientReady::OnGradientReady(GradientReadyHook& hook) : previous_(ready_hook) { ready_hook = &hook; }
OnGradientReady::~OnGradientReady() { ready_hook = previous_; }

NoGradGuard::NoGradGuard() : previous_(grad_enabled) { grad_enabled = false; }
NoGradGuard::~NoGradGuard() { grad_enabled = previous_; }

bool grad_mode_enabled() { return grad_enabled; }

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled) return false;
  for (const Tensor* input : inputs)
    if (input->requires_grad()) return true;
  return false;
}

namespace {
Tensor make_node(Tensor output, const char* name, std::vector<Tensor> inputs, Node::BackwardFn backward,
                 Node::AddIntoFn add_into) {
  if (!grad_enabled) return output;
  bool needed = false;
  for (const Tensor& input : inputs) needed = needed || input.requires_grad();
  if (!needed) return output;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  node->add_into = std::move(add_into);
  output.impl()->requires_grad = true;
  output.impl()->grad_fn = std::move(node);
  return output;
}
}  // namespace

Tensor record(Tensor output, const char* name, std::vector<Tensor> inputs, Node::BackwardFn backward) {
  return make_node(std::move(output), name, std::move(inputs), std::move(backward), nullptr);
}

Tensor record(Tensor output, const char* name, const Tensor& input, Node::BackwardFn backward,
              Node::AddIntoFn add_into) {
  return make_node(std::move(output), name, {input}, std::move(backward), std::move(add_into));
}

namespace {

// The gradient backward starts from: grad_output, or 1 for a one-element root.
Tensor seed_gradient(const Tensor& root, const Tensor& grad_output) {
  QF_CHECK(root.defined(), "backward: called on an undefined tensor");
  QF_CHECK(root.requires_grad(), "backward: tensor of shape ", root.shape(),
           " does not require grad (no input of the graph has requires_grad set)");
  if (grad_output.defined()) {
    QF_CHECK(grad_output.shape() == root.shape(), "backward: gradient shape ", grad_output.shape(),
             " does not match tensor shape ", root.shape());
    return grad_output.detach();
  }
  QF_CHECK(root.numel() == 1, "backward: gradient can be implicit only for a one-element tensor, got shape ",
           root.shape(), "; pass the gradient explicitly");
  return Tensor::ones(root.shape());
}

// The nodes reachable from `root` in topological order (inputs before users), by an
// iterative post-order DFS. The vector owns the nodes: releasing a node's edges may drop
// the last other reference.
std::vector<std::shared_ptr<Node>> topological_order(const std::shared_ptr<Node>& root) {
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> visited{root.get()};
  std::vector<std::pair<std::shared_ptr<Node>, std::size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [node, next_input] = stack.back();
    QF_CHECK(!node->is_released, "backward: the graph through '", node->name,
             "' was already freed by an earlier backward; pass retain_graph=true to the "
             "first backward to run it twice");
    if (next_input < node->inputs.size()) {
      const Tensor& input = node->inputs[next_input++];
      const std::shared_ptr<Node>& child = input.grad_fn();
      if (child && input.requires_grad() && visited.insert(child.get()).second) stack.push_back({child, 0});
    } else {
      order.push_back(std::move(node));
      stack.pop_back();
    }
  }
  return order;
}

// One node's step: its backward turns dL/d(output) into dL/d(each input), which go to
// the producing node's pending gradient or, for a leaf, into its .grad.
void propagate(Node& node, const Tensor& node_grad, std::unordered_map<Node*, Tensor>& pending) {
  const ProfileScope profile("backward", node.name);
  if (node.add_into) {  // one input; its gradient so far, owned, takes this one in place
    const Tensor& input = node.inputs[0];
    if (!input.requires_grad()) return;
    Tensor& slot = input.grad_fn() ? pending[input.grad_fn().get()] : input.impl()->grad;
    if (!slot.defined())
      slot = Tensor::zeros(input.shape());
    else if (!owns_storage(slot))
      slot = slot.clone();
    node.add_into(node_grad, slot);
    return;
  }
  std::vector<Tensor> input_grads = node.backward(node_grad, node);
  assert(input_grads.size() == node.inputs.size());
  for (std::size_t i = 0; i < node.inputs.size(); ++i) {
    const Tensor& input = node.inputs[i];
    if (!input.requires_grad() || !input_grads[i].defined()) continue;
    QF_CHECK(input_grads[i].shape() == input.shape(), "backward of '", node.name, "': gradient for input ", i,
             " has shape ", input_grads[i].shape(), ", expected ", input.shape());
    if (input.grad_fn())
      accumulate(pending[input.grad_fn().get()], std::move(input_grads[i]), false);
    else
      accumulate(input.impl()->grad, std::move(input_grads[i]), true);
  }
}

// Counts, for each leaf that needs a gradient, the edges to it from the nodes backward
// will visit, and reports it to the hook when the last of them has been visited.
class LeafCountdown {
 public:
  LeafCountdown(GradientReadyHook* hook, const std::vector<std::shared_ptr<Node>>& order) : hook_(hook) {
    if (hook_ == nullptr) return;
    for (const auto& node : order)
      for (const Tensor& input : node->inputs)
        if (input.requires_grad() && input.is_leaf()) ++edges_left_[input.impl()];
  }
  // Before `node` lets go of its inputs.
  void visited(const Node& node) {
    if (hook_ == nullptr) return;
    for (const Tensor& input : node.inputs)
      if (input.requires_grad() && input.is_leaf() && --edges_left_[input.impl()] == 0)
        hook_->gradient_ready(input);
  }

 private:
  GradientReadyHook* hook_;
  std::unordered_map<const TensorImpl*, int> edges_left_;
};

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph) {
  Tensor seed = seed_gradient(root, grad_output);
  NoGradGuard no_grad;
  if (root.is_leaf()) {  // backward of a leaf: its gradient is the seed
    accumulate(root.impl()->grad, std::move(seed), true);
    if (ready_hook != nullptr) ready_hook->gradient_ready(root);
    return;
  }
  const std::vector<std::shared_ptr<Node>> order = topological_order(root.grad_fn());
  LeafCountdown countdown(ready_hook, order);
  std::unordered_map<Node*, Tensor> pending{{root.grad_fn().get(), std::move(seed)}};  // dL/d(node output)
  for (auto it = order.rbegin(); it != order.rend(); ++it) {  // users before their inputs
    Node& node = **it;
    auto found = pending.find(&node);
    if (found == pending.end()) {  // no gradient flows here
      countdown.visited(node);
      continue;
    }
    const Tensor node_grad = std::move(found->second);
    pending.erase(found);
    propagate(node, node_grad, pending);
    countdown.visited(node);
    if (!retain_graph) {
      node.backward = nullptr;  // frees the saved tensors
      node.add_into = nullptr;
      node.inputs.clear();
      node.is_released = true;
    }
  }
}

}  // namespace qforge
