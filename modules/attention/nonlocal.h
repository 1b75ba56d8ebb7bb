// Non-local Neural Networks (Wang et al., arXiv:1711.07971), embedded-Gaussian form with the
// 1/√d scale that mmsegmentation's NonLocal2d uses: every pixel attends to all N pixels.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "attention/block.h"
#include "core/batch_norm.h"

namespace attnseg {

struct NonLocalOptions {
  explicit NonLocalOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  // Inner width is channels / reduction, as in the paper's bottleneck.
  TORCH_ARG(int64_t, reduction) = 2;
  // Zero-initialised norm scale after the output projection (mmsegmentation's zeros_init):
  // the block starts as the identity. Set by the start rule: on only with
  // `model.attention.start: paper`.
  TORCH_ARG(bool, zero_init) = true;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("reduction", reduction_);
  }
  void check() const;
};

class NonLocalImpl : public AttentionBlockImpl {
 public:
  explicit NonLocalImpl(const NonLocalOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;

  NonLocalOptions options;

 private:
  torch::nn::Conv2d theta_{nullptr}, phi_{nullptr}, g_{nullptr}, out_{nullptr};
  SyncBatchNorm2d norm_{nullptr};
};
TORCH_MODULE(NonLocal);

}  // namespace attnseg
