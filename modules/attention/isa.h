// Interlaced Sparse Self-Attention for Semantic Segmentation (Huang et al., arXiv:1907.12273),
// as the authors' ISA_Block (openseg-group/openseg.pytorch, lib/models/modules/isa_block.py):
// the map is padded (zeros, split evenly between both sides, as the reference) to multiples of
// the down factor (P_h, P_w); a long-range pass lets the pixels sharing one position inside
// the P_h×P_w blocks attend to each other (interlaced groups, one per offset), then a
// short-range pass attends inside each block; the padding is cropped back, so any size works.
// Each pass is the reference's SelfAttentionBlock2D: query/key 2×(1×1 conv, BN, ReLU) to C/2,
// value 1×1 conv, softmax(QKᵀ/√d)V, 1×1 conv + BN + ReLU. As in the reference, padded zeros
// are ordinary tokens. The block returns x + ISA(x) (the reference's ISA_Module concatenates
// x instead; our head concatenates after the block already).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <array>

#include "attention/block.h"

namespace attnseg {

namespace functional {
// [B, C, gh·ph, gw·pw] → [B·ph·pw, C, gh, gw]: group (i, j) holds the pixels (gy·ph + i, gx·pw + j).
at::Tensor interlaced_groups(const at::Tensor& x, int64_t ph, int64_t pw);
// Inverse of interlaced_groups.
at::Tensor from_interlaced_groups(const at::Tensor& g, int64_t batch, int64_t ph, int64_t pw);
// [B, C, gh·ph, gw·pw] → [B·gh·gw, C, ph, pw]: the local blocks.
at::Tensor local_groups(const at::Tensor& x, int64_t ph, int64_t pw);
}  // namespace functional

struct IsaOptions {
  explicit IsaOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, reduction) = 2;  // key/query width channels / reduction
  TORCH_ARG(std::vector<int64_t>, down_factor) = std::vector<int64_t>{8, 8};

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("reduction", reduction_);
    field("down_factor", down_factor_);
  }
  void check() const;
};

// One SelfAttentionBlock2D.
class IsaRelationImpl : public torch::nn::Module {
 public:
  IsaRelationImpl(int64_t channels, int64_t key_channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential query{nullptr}, key{nullptr}, out{nullptr};
  torch::nn::Conv2d value{nullptr};
};
TORCH_MODULE(IsaRelation);

class IsaImpl : public AttentionBlockImpl {
 public:
  explicit IsaImpl(const IsaOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  // The two passes without the residual: what the reference's ISA_Block returns.
  torch::Tensor relation(const torch::Tensor& x);
  int64_t macs(const std::vector<int64_t>& shape) const override;

  IsaOptions options;
  IsaRelation long_range{nullptr}, short_range{nullptr};
};
TORCH_MODULE(Isa);

}  // namespace attnseg
