// What sigmar-kernels times our fused kernels against, on the device of the inputs:
// - GenericOps: the handful of generic tensor ops an autograd framework offers (elementwise with
//   broadcasting, row reductions, gathers by label, GEMM). Each op reads its inputs once and
//   writes a fresh tensor: the unfused chain, with every intermediate materialised.
// - chain_*: each fused kernel's math written as such a chain, forward and backward (and the
//   state update), the way a user of a framework would write the loss.
// - Reference: one timed thing with named outputs: a chain, or a library called directly
//   (oneDNN / cuDNN for convolution, oneDNN sgemm / cuBLAS for linear layers and X·Xᵀ), or an
//   empty kernel launch (the floor of any GPU call).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "engine/tensor.hpp"

namespace sigmar::lab {

using TensorMap = std::map<std::string, Tensor>;
using Params = std::map<std::string, double>;

enum class Unary {
  exp,
  log,
  sqrt,
  sigmoid,
  scale,      // a·s
  shift,      // a + s
  clamp_min,  // max(a, s)
  clamp_max,  // min(a, s)
  greater,    // 1 where a > s, else 0
};
enum class Binary { add, sub, mul, div };
enum class Reduce { sum, max };

// Shapes: `a` is seen as [R, K] with R = a.dim(0) (a 1-D [n] is [n, 1]). A second operand
// `b` broadcasts when it is a one-element tensor (scalar), [R, 1] or [R] (one value per row),
// or [1, K] (one value per column); otherwise it must have a's shape. Labels are int32.
class GenericOps {
 public:
  virtual ~GenericOps() = default;
  virtual Device device() const = 0;

  virtual Tensor unary(Unary op, const Tensor& a, float s = 0.0f) = 0;
  virtual Tensor binary(Binary op, const Tensor& a, const Tensor& b) = 0;
  // a where keep != 0, `value` elsewhere; keep broadcasts like b above.
  virtual Tensor masked_fill(const Tensor& a, const Tensor& keep, float value) = 0;
  virtual Tensor reduce_rows(Reduce op, const Tensor& a) = 0;                // [R,K] -> [R,1]
  virtual Tensor sum_all(const Tensor& a) = 0;                               // -> [1]
  virtual Tensor gather_rows(const Tensor& table, const Tensor& index) = 0;  // [C,K],[B]->[B,K]
  virtual Tensor pick(const Tensor& a, const Tensor& index) = 0;  // a[i, index[i]] -> [B,1]
  // out[index[i], :] += src[i, :] into a zeroed [rows, K]
  virtual Tensor index_add_rows(const Tensor& src, const Tensor& index, int64_t rows) = 0;
  virtual Tensor one_hot(const Tensor& index, int64_t classes) = 0;  // [B, classes]
  virtual Tensor same_label(const Tensor& index) = 0;                // [B,B]: 1 where y_i == y_j
  virtual Tensor eye(int64_t n) = 0;
  virtual Tensor transpose(const Tensor& a) = 0;  // [R,K] -> [K,R]
  // op(a)·op(b), row-major, op = transpose when the flag is set (oneDNN sgemm / cuBLAS)
  virtual Tensor matmul(const Tensor& a, bool ta, const Tensor& b, bool tb) = 0;

  Tensor full(const Shape& shape, float value) { return Tensor::full(shape, value, device()); }
};

// The generic ops on `device` (throws for cuda in a build without it).
GenericOps& generic_ops(Device device);

// A kernel's math as a chain of generic ops: inputs and params named as in the registry;
// returns the kernel's outputs (loss, gradients, new state) under the registry's names.
using ChainFn = std::function<TensorMap(GenericOps&, const TensorMap&, const Params&)>;
TensorMap chain_softmax_ce(GenericOps& g, const TensorMap& in, const Params& p);
TensorMap chain_center(GenericOps& g, const TensorMap& in, const Params& p);
TensorMap chain_snnl(GenericOps& g, const TensorMap& in, const Params& p);
TensorMap chain_s2r(GenericOps& g, const TensorMap& in, const Params& p);
TensorMap chain_sgd(GenericOps& g, const TensorMap& in, const Params& p);
TensorMap chain_adam(GenericOps& g, const TensorMap& in, const Params& p);
TensorMap chain_prelu(GenericOps& g, const TensorMap& in, const Params& p);

// One thing to time. run() issues one call (on a GPU it may return before the work ends: the
// timer waits); outputs() gives what the last run computed, on the inputs' device, named as
// the kernel's outputs (empty for a bound such as an empty launch, which computes nothing).
class Reference {
 public:
  virtual ~Reference() = default;
  virtual std::string name() const = 0;
  virtual void run() = 0;
  virtual TensorMap outputs() = 0;
};

std::unique_ptr<Reference> chain_reference(ChainFn fn, const TensorMap& in, const Params& p);
// Convolution forward + backward (data, weights, bias) by oneDNN or cuDNN called directly,
// with inputs already in the library's preferred layouts.
std::unique_ptr<Reference> conv2d_library(const TensorMap& in, const Params& p);
// Linear forward + backward: three GEMMs and the bias terms (oneDNN sgemm or cuBLAS).
std::unique_ptr<Reference> linear_library(const TensorMap& in, const Params& p);
// G = X·Xᵀ for X = in["features"] [B,D]: the GEMM at the heart of any SNNL.
std::unique_ptr<Reference> gram_library(const TensorMap& in, const Params& p);
// An empty kernel launch (GPU only): the floor under any kernel call.
std::unique_ptr<Reference> empty_launch(const TensorMap& in, const Params& p);

}  // namespace sigmar::lab
