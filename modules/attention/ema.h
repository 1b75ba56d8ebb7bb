// EMANet: Expectation-Maximization Attention Networks for Semantic Segmentation (Li et al.,
// arXiv:1907.13426), as XiaLiPKU/EMANet's EMAU: 1×1 conv, then T iterations of E-step
// (responsibilities z = softmax_k(xᵀμ)) and M-step (μ = x·z normalised over positions,
// then l2-normalised over channels), reconstruction x̃ = μzᵀ, ReLU, 1×1 conv + BN, residual,
// ReLU. The K bases are a buffer (saved in checkpoints) updated only in training mode by a
// moving average of the batch-mean bases (momentum 0.9, as the reference's train.py).
// Where we differ: the reference runs every EM step without gradient, so its first conv never
// receives one; we let the gradient through the last E-step's responsibilities (the forward
// values are unchanged), so every parameter trains.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <utility>

#include "attention/block.h"
#include "core/batch_norm.h"

namespace attnseg {

namespace functional {
// T EM iterations from the bases mu [B, C, K] on x [B, C, N]: returns (μ_T, z_T), z_T
// [B, N, K] being the responsibilities of the last E-step (computed from μ_{T−1}).
std::pair<at::Tensor, at::Tensor> em_bases(const at::Tensor& x, const at::Tensor& mu, int64_t iterations);
}  // namespace functional

struct EmaOptions {
  explicit EmaOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, bases) = 64;
  TORCH_ARG(int64_t, iterations) = 3;
  TORCH_ARG(double, momentum) = 0.9;  // weight of the old bases in the moving average

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("bases", bases_);
    field("iterations", iterations_);
    field("momentum", momentum_);
  }
  void check() const;
};

class EmaImpl : public AttentionBlockImpl {
 public:
  explicit EmaImpl(const EmaOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;

  EmaOptions options;
  torch::Tensor mu;  // [1, C, K] buffer

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  SyncBatchNorm2d norm_{nullptr};
};
TORCH_MODULE(Ema);

}  // namespace attnseg
