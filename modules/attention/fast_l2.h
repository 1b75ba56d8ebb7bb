// Real-time Semantic Segmentation with Fast Attention (Hu et al., FANet, arXiv:2007.03815):
// Q and K l2-normalised over channels replace the softmax, so the cosine-similarity attention
// (Q̂K̂ᵀ)V/N can be computed as Q̂(K̂ᵀV)/N, linear in N. The paper's equation keeps the 1/N
// (the catalog notes FANet's code drops it; no code is public to follow, so we keep the
// paper's form). Around the core, as in the paper's fast attention module: Q, K, V from 1×1
// conv + BN, output 1×1 conv + BN added to the input; the output BN scale starts at 0
// (`zero_init`, on only with `model.attention.start: paper`) so the block starts as the
// identity like nonlocal.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "attention/block.h"

namespace attnseg {

namespace functional {
// out = Q̂(K̂ᵀV)/N with Q̂, K̂ l2-normalised over channels: q, k [B, D, H, W], v [B, C, H, W].
at::Tensor fast_l2_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);
}  // namespace functional

struct FastL2Options {
  explicit FastL2Options(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, reduction) = 2;  // query/key width channels / reduction
  TORCH_ARG(bool, zero_init) = true;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("reduction", reduction_);
  }
  void check() const;
};

class FastL2Impl : public AttentionBlockImpl {
 public:
  explicit FastL2Impl(const FastL2Options& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;

  FastL2Options options;

 private:
  torch::nn::Sequential query_{nullptr}, key_{nullptr}, value_{nullptr}, out_{nullptr};
};
TORCH_MODULE(FastL2);

}  // namespace attnseg
