// GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond (Cao et al.,
// arXiv:1904.11492), as xvjiarui/GCNet's ContextBlock with pooling 'att' and fusion
// 'channel_add': a 1×1 conv gives one map, softmax over all HW positions weights one pooled
// context vector, a bottleneck (1×1, LayerNorm, ReLU, 1×1) transforms it, and the result is
// added at every position. The bottleneck is C/4 (`reduction: 4`) as mmsegmentation's
// GCHead (the backbone default is C/16). The reference zero-initialises the last conv, so the block starts as the
// identity; `zero_init` is that start, on only with `model.attention.start: paper`.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "attention/block.h"

namespace attnseg {

namespace functional {
// context[b, c] = Σ_n softmax_n(mask[b, n]) x[b, c, n]: x [B, C, H, W], mask [B, 1, H, W] → [B, C, 1, 1].
at::Tensor global_context(const at::Tensor& x, const at::Tensor& mask);
}  // namespace functional

struct GlobalContextOptions {
  explicit GlobalContextOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, reduction) = 4;  // bottleneck width channels / reduction (the paper's r)
  TORCH_ARG(bool, zero_init) = true;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("reduction", reduction_);
  }
  void check() const;
};

class GlobalContextImpl : public AttentionBlockImpl {
 public:
  explicit GlobalContextImpl(const GlobalContextOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;

  GlobalContextOptions options;

 private:
  int64_t planes_ = 0;
  torch::nn::Conv2d mask_{nullptr}, down_{nullptr}, up_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};
TORCH_MODULE(GlobalContext);

}  // namespace attnseg
