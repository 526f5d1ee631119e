// Differentiable ops: each runs its forward on the backend of its inputs' device and, when
// any input needs a gradient and grad mode is on, records a Node whose closure calls the
// backend's backward. These are the only functions models and losses call.
#pragma once

#include "engine/backend.hpp"
#include "engine/tensor.hpp"

namespace sigmar::ops {

// x [N,Cin,H,W], w [Cout,Cin,kH,kW], b [Cout] (may be undefined) -> [N,Cout,Ho,Wo]
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, Conv2dArgs args);
// x [N,C,H,W] -> [N,C,Ho,Wo], Ho = (H - k)/s + 1 (floor)
Tensor max_pool2d(const Tensor& x, PoolArgs args);
// x [N,C,H,W] -> [N,C]
Tensor global_avg_pool(const Tensor& x);
// x [N,in], w [out,in], b [out] (may be undefined) -> [N,out]
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);
Tensor relu(const Tensor& x);
// slope a: [C] for channel dim 1, or [1] shared
Tensor prelu(const Tensor& x, const Tensor& a);
// Batch norm over dim 1. Training uses batch statistics and updates the running ones in place.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                  Tensor& running_mean, Tensor& running_var, bool training,
                  float momentum = 0.1f, float eps = 1e-5f);
Tensor add(const Tensor& a, const Tensor& b);
Tensor reshape(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x);  // [N, ...] -> [N, rest]

// A loss computed by a fused kernel: `out.loss` [1] becomes a graph node whose backward
// scales the precomputed `out.grad` by the incoming gradient and hands it to `input`.
Tensor fused_loss(const char* name, const LossOut& out, const Tensor& input);

// SPEC 2.1: mean softmax cross-entropy of logits [B,C] against int32 labels [B].
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels);

// L = a + s·b for scalar losses (the training objective CE + λ·aux).
Tensor add_scaled(const Tensor& a, const Tensor& b, float s);

// A scalar [1] tensor's value, on the host.
float item(const Tensor& t);

}  // namespace sigmar::ops
