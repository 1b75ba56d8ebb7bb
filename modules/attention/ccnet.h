// CCNet: Criss-Cross Attention for Semantic Segmentation (Huang et al., arXiv:1811.11721).
// Each pixel attends to the H+W−1 pixels of its row and column under one softmax; the
// module is applied `recurrence` times with shared weights (R=2 reaches every pixel).
// As in the reference code, the query/key width is channels/8 and gamma starts at 0, so the
// block starts as the identity. `zero_init` is that start, set by the start rule (registry.h,
// BlockStart): on only with `model.attention.start: paper`, since from 0 the block is at a
// saddle (every weight before gamma gets zero gradient) that a few-minute CPU budget does not
// leave (measured in the README).
// `kernel` picks the attention's implementation: `unfused` (the default) is the LibTorch path
// (batched products, the energies concatenated and softmaxed: the reference), `fused` the
// kernels of criss_cross_fused.h, which keep one weight tensor instead of several but sum
// directly: each thread re-reads the weights and values its channel needs, B·C·H·W·(H+W)
// reads (26 GB at [1, 512, 128, 256]) where the products reuse them from tiles, and on the CPU
// they were 16-29x slower than the unfused path's BLAS products. Not the default until a GPU
// run measures them (tools/device_check.sh times both).
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <string>

#include "attention/block.h"

namespace attnseg {

struct CrissCrossOptions {
  explicit CrissCrossOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, recurrence) = 2;
  TORCH_ARG(int64_t, reduction) = 8;
  TORCH_ARG(bool, zero_init) = true;  // gamma starts at 0 (the identity), else at 1
  TORCH_ARG(std::string, kernel) = "unfused";  // unfused or fused

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("recurrence", recurrence_);
    field("reduction", reduction_);
    field("kernel", kernel_);
  }
  void check() const;
};

class CrissCrossImpl : public AttentionBlockImpl {
 public:
  explicit CrissCrossImpl(const CrissCrossOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  // One recurrent pass: x + gamma · criss_cross_attention(q(x), k(x), v(x)).
  torch::Tensor pass(const torch::Tensor& x);
  int64_t macs(const std::vector<int64_t>& shape) const override;

  CrissCrossOptions options;
  torch::Tensor gamma;

 private:
  torch::nn::Conv2d query_{nullptr}, key_{nullptr}, value_{nullptr};
};
TORCH_MODULE(CrissCross);

}  // namespace attnseg
