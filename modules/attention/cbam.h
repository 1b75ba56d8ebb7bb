// CBAM: Convolutional Block Attention Module (Woo et al., arXiv:1807.06521), as
// Jongchan/attention-module's MODELS/cbam.py: a channel gate (average- and max-pooled
// descriptors through one shared MLP with reduction r, summed, sigmoid) and then a spatial
// gate on the channel-gated map (channel-max and channel-mean maps, 7×7 conv + BN, sigmoid).
// The output is the doubly gated input (no residual), as the module the paper inserts.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <utility>

#include "attention/block.h"
#include "core/batch_norm.h"

namespace attnseg {

struct CbamOptions {
  explicit CbamOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, reduction) = 16;  // hidden width max(1, channels / reduction)
  TORCH_ARG(int64_t, kernel_size) = 7;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("reduction", reduction_);
    field("kernel_size", kernel_size_);
  }
  void check() const;
};

class CbamImpl : public AttentionBlockImpl {
 public:
  explicit CbamImpl(const CbamOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;
  // sigmoid(MLP(avgpool x) + MLP(maxpool x)): [B, C, 1, 1].
  torch::Tensor channel_gate(const torch::Tensor& x);
  // sigmoid(BN(conv([max_c x, mean_c x]))): [B, 1, H, W].
  torch::Tensor spatial_gate(const torch::Tensor& x);

  CbamOptions options;

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::nn::Conv2d spatial_{nullptr};
  SyncBatchNorm2d norm_{nullptr};
};
TORCH_MODULE(Cbam);

}  // namespace attnseg
