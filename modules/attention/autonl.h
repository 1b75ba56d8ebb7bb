// AutoNL: Neural Architecture Search for Lightweight Non-Local Networks (Li et al.,
// arXiv:2004.01961), the LightNL block of LiYingwei/AutoNL (model_def.py, non_local_op and
// _call_non_local): no query/key/value projections; the query is the first C/reduction channels of
// x, the key the same channels of x subsampled with stride s, the value all channels of the
// subsampled x; no softmax, f = θ(φᵀg)/(H·W) (the code divides by the full H·W, not the
// subsampled count), evaluated in whichever order of products costs less, exactly as the code
// chooses; then a 3×3 depthwise conv (no bias) and BN whose scale starts at 0 (the code's
// nl_zero_init default; `zero_init`, set by the start rule: on only with
// `model.attention.start: paper`), added to x.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "attention/block.h"
#include "core/batch_norm.h"

namespace attnseg {

namespace functional {
// out = θ(φᵀg)/N_full or (θφᵀ)g/N_full: theta [B, D, H, W]; phi [B, D, h, w]; g [B, C, h, w]
// → [B, C, H, W]. `linear_order` picks θ(φᵀg).
at::Tensor light_nonlocal(const at::Tensor& theta, const at::Tensor& phi, const at::Tensor& g, bool linear_order);
}  // namespace functional

struct LightNonLocalOptions {
  explicit LightNonLocalOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, reduction) = 4;  // query and key: the first channels / reduction channels
  TORCH_ARG(int64_t, stride) = 2;     // spatial subsampling of key and value
  TORCH_ARG(bool, zero_init) = true;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("reduction", reduction_);
    field("stride", stride_);
  }
  void check() const;
};

class LightNonLocalImpl : public AttentionBlockImpl {
 public:
  explicit LightNonLocalImpl(const LightNonLocalOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;
  // The reference's rule: the linear order θ(φᵀg) when it needs fewer multiply-adds.
  bool linear_order(int64_t h, int64_t w) const;

  LightNonLocalOptions options;

 private:
  int64_t query_channels_ = 0;
  torch::nn::Conv2d depthwise_{nullptr};
  SyncBatchNorm2d norm_{nullptr};
};
TORCH_MODULE(LightNonLocal);

}  // namespace attnseg
