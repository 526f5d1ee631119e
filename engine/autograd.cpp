// Reverse-mode autograd over the recorded graph.
//
// Every op output that needs a gradient holds a Node: the op's inputs and a closure that maps
// the output's gradient to one gradient per input. backward() orders the nodes reachable from
// the root so that each runs after every node that consumes its output, then walks them once.
// Gradients of intermediate tensors live only in this walk; leaves (parameters, inputs that
// asked for it) get theirs added to Tensor::grad, which persists until zeroed explicitly.
#include "engine/backend.hpp"
#include "engine/profile.hpp"
#include "engine/tensor.hpp"

#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

namespace sigmar {

namespace {

// Post-order DFS over grad_fn links, iterative so deep nets cannot overflow the stack.
std::vector<Node*> topological_order(Node* root) {
  std::vector<Node*> order;
  std::unordered_set<Node*> seen{root};
  std::vector<std::pair<Node*, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      const Tensor& input = node->inputs[next++];
      // An optional input left out (a conv or linear without bias) is an undefined tensor.
      Node* child = input.defined() ? input.grad_fn().get() : nullptr;
      if (child && seen.insert(child).second) stack.push_back({child, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  return order;  // children before parents; walk it backwards
}

}  // namespace

void Tensor::backward() const {
  if (numel() != 1) {
    throw std::logic_error("backward() without a seed needs a scalar, got shape " +
                           shape_str(shape()));
  }
  backward(Tensor::full(shape(), 1.0f, device()));
}

void Tensor::backward(const Tensor& seed) const {
  // The seed is ∂L/∂(this): the ops' backward calls read it as one, so it must match.
  if (seed.shape() != shape() || seed.device() != device() || seed.dtype() != DType::f32) {
    throw std::invalid_argument("backward: seed " + std::string(dtype_name(seed.dtype())) +
                                " " + shape_str(seed.shape()) + " on " +
                                device_name(seed.device()) + " for a tensor " +
                                shape_str(shape()) + " on " + device_name(device()));
  }
  if (!grad_fn()) {
    // A leaf: its gradient is the seed itself.
    if (requires_grad()) const_cast<Tensor*>(this)->accumulate_grad(seed);
    return;
  }
  NoGradGuard no_grad;  // the backward closures must not record new graph
  std::unordered_map<Node*, Tensor> pending;  // gradient of each node's output
  pending[grad_fn().get()] = seed;
  std::vector<Node*> order = topological_order(grad_fn().get());
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = *it;
    auto found = pending.find(node);
    if (found == pending.end()) continue;  // no gradient flows here
    Tensor grad_out = found->second;
    pending.erase(found);
    std::vector<Tensor> grads = node->backward(grad_out);
    if (grads.size() != node->inputs.size()) {
      throw std::logic_error("op " + node->name + " returned the wrong number of gradients");
    }
    for (size_t i = 0; i < grads.size(); ++i) {
      Tensor& input = node->inputs[i];
      if (!grads[i].defined() || !input.requires_grad()) continue;
      profile::Scope timer("gradient accumulation");
      if (Node* producer = input.grad_fn().get()) {
        // Out-of-place sum: an op may hand the same buffer to several inputs.
        auto [slot, fresh] = pending.try_emplace(producer, grads[i]);
        if (!fresh) slot->second = backend_of(slot->second).add(slot->second, grads[i]);
      } else {
        input.accumulate_grad(grads[i]);
      }
    }
  }
}

}  // namespace sigmar
