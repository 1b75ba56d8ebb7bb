// Efficient Attention: Attention with Linear Complexities (Shen et al., arXiv:1812.01243),
// as cmsflash/efficient-attention's EfficientAttention: per head, softmax over channels for
// each query, softmax over positions for each key channel, out = ρq(Q)(ρk(K)ᵀV) computed as
// the small [dk, dv] context first, then a 1×1 reprojection added to the input. The
// reference has no zero initialisation, so the block does not start as the identity.
// Key/value widths default to C/2 with 2 heads (the reference leaves them to the caller).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <algorithm>

#include "attention/block.h"

namespace attnseg {

namespace functional {
// out_h = softmax_c(Q_h) · (softmax_n(K_h)ᵀ V_h)ᵀ per head h, channels split evenly into heads.
// q, k: [B, Dk, H, W]; v: [B, Dv, H, W] → [B, Dv, H, W].
at::Tensor efficient_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads);
}  // namespace functional

struct EfficientAttentionOptions {
  explicit EfficientAttentionOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, key_channels) = 0;    // 0: channels / 2
  TORCH_ARG(int64_t, value_channels) = 0;  // 0: channels / 2
  TORCH_ARG(int64_t, heads) = 2;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("key_channels", key_channels_);
    field("value_channels", value_channels_);
    field("heads", heads_);
  }
  void check() const;
  int64_t key_width() const { return key_channels_ > 0 ? key_channels_ : std::max<int64_t>(channels_ / 2, 1); }
  int64_t value_width() const { return value_channels_ > 0 ? value_channels_ : std::max<int64_t>(channels_ / 2, 1); }
};

class EfficientAttentionImpl : public AttentionBlockImpl {
 public:
  explicit EfficientAttentionImpl(const EfficientAttentionOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;

  EfficientAttentionOptions options;

 private:
  int64_t dk_ = 0, dv_ = 0;
  torch::nn::Conv2d keys_{nullptr}, queries_{nullptr}, values_{nullptr}, reprojection_{nullptr};
};
TORCH_MODULE(EfficientAttention);

}  // namespace attnseg
