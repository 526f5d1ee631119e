// The CUDA backend: the Backend seam (engine/backend.hpp) for tensors on Device::cuda.
// Convolution, pooling and batch norm run on cuDNN; linear layers on cuBLAS; activations,
// losses, optimizers and data assembly on our kernels (kernels/kernels_cuda.cuh). All work
// goes to the run's one stream, so nothing here waits for the GPU except where the host
// must read a value (label checks, which copy the labels back before any kernel uses them).
//
// Numerics: float32 throughout. cuDNN convolutions use FMA math only (never TF32), cuBLAS
// its default fp32 math (pedantic in deterministic mode), so results match the CPU to
// rounding. Deterministic mode (sigmar::deterministic()) restricts cuDNN to algorithms it
// flags deterministic, chosen by its heuristics instead of by timing.
//
// Not thread-safe: one thread drives the backend, as one stream orders its work.
#pragma once

#include "engine/backend.hpp"
#include "engine/cuda/check.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace sigmar::cuda {

// The run's one stream (engine/cuda/runtime.cpp); every launcher and library call uses it.
cudaStream_t stream();

class CudaBackend final : public Backend {
 public:
  CudaBackend();
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::cuda; }
  std::string describe() const override;

  Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b,
                        Conv2dArgs args) override;
  ConvGrads conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Conv2dArgs args,
                            bool need_dx, bool need_dw, bool need_db) override;

  Tensor maxpool_forward(const Tensor& x, PoolArgs args) override;
  Tensor maxpool_backward(const Tensor& x, const Tensor& y, const Tensor& dy,
                          PoolArgs args) override;

  Tensor global_avgpool_forward(const Tensor& x) override;
  Tensor global_avgpool_backward(const Tensor& dy, const Shape& x_shape) override;

  Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& b) override;
  ConvGrads linear_backward(const Tensor& x, const Tensor& w, const Tensor& dy, bool need_dx,
                            bool need_dw, bool need_db) override;

  Tensor relu_forward(const Tensor& x) override;
  Tensor relu_backward(const Tensor& x, const Tensor& dy) override;
  Tensor prelu_forward(const Tensor& x, const Tensor& a) override;
  ConvGrads prelu_backward(const Tensor& x, const Tensor& a, const Tensor& dy) override;

  BatchNormOut batchnorm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                               Tensor& running_mean, Tensor& running_var, float momentum,
                               float eps) override;
  Tensor batchnorm_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        const Tensor& running_mean, const Tensor& running_var,
                        float eps) override;
  BatchNormGrads batchnorm_backward(const Tensor& x, const Tensor& gamma,
                                    const BatchNormOut& saved, const Tensor& dy) override;

  Tensor add(const Tensor& a, const Tensor& b) override;
  Tensor add_scaled(const Tensor& a, const Tensor& b, float s) override;
  Tensor scale_by(const Tensor& x, const Tensor& s) override;
  void add_inplace(Tensor& dst, const Tensor& src) override;
  void fill(Tensor& dst, float value) override;

  LossOut softmax_ce(const Tensor& logits, const Tensor& labels) override;
  LossOut center_loss(const Tensor& x, const Tensor& labels, const Tensor& centers) override;
  void center_update(const Tensor& x, const Tensor& labels, Tensor& centers,
                     float alpha) override;
  LossOut snnl(const Tensor& x, const Tensor& labels, float temperature) override;
  LossOut s2r_loss(const Tensor& x, const Tensor& labels, const Tensor& centers,
                   const Tensor& variances, S2RSettings s) override;
  void s2r_update(const Tensor& x, const Tensor& labels, Tensor& centers, Tensor& variances,
                  float alpha) override;

  void sgd_step(Tensor& w, const Tensor& g, Tensor& momentum_buf, SgdSettings s) override;
  void adam_step(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, int64_t step,
                 AdamSettings s) override;

  Tensor gather_normalize(const Tensor& images_u8, const Tensor& indices,
                          const std::vector<float>& mean,
                          const std::vector<float>& stddev) override;

  // How many convolution algorithm choices are cached, and the cuDNN workspace's size (tests).
  size_t cached_conv_algorithms() const { return algos_.size(); }
  size_t conv_workspace_bytes() const { return workspace_bytes_; }

 private:
  enum class ConvKind : int64_t { forward, backward_data, backward_filter };
  // kind, N, C, H, W, K, kH, kW, stride, pad, deterministic
  using ConvKey = std::array<int64_t, 11>;
  struct ConvAlgo {
    int algo = 0;
    size_t workspace = 0;
  };
  struct ConvSetup;  // descriptors for one convolution (cuda_backend.cpp)

  ConvAlgo conv_algo(ConvKind kind, const ConvSetup& s);
  void* conv_workspace(size_t bytes);
  void set_blas_math();

  cudnnHandle_t cudnn_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  size_t cublas_workspace_bytes_ = 0;
  void* workspace_ = nullptr;  // cuDNN's, grown to the largest need seen so far
  size_t workspace_bytes_ = 0;
  std::map<ConvKey, ConvAlgo> algos_;
};

}  // namespace sigmar::cuda
