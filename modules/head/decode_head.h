// Decode heads. AttentionHead hosts any registered attention block the way mmsegmentation's
// CCHead and DNLHead host theirs (reduce conv 3×3 → block → conv 3×3 → concat with the
// backbone feature → 3×3 bottleneck → dropout → 1×1 classifier); FCNHead is the auxiliary
// head on stage 3 (Long et al., arXiv:1411.4038).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/pimpl.h>

#include <optional>

#include "attention/block.h"

namespace attnseg {

// conv k×k (no bias) → BatchNorm → ReLU.
torch::nn::Sequential conv_bn_relu(int64_t in, int64_t out, int64_t kernel);

struct AttentionHeadOptions {
  AttentionHeadOptions(int64_t in_channels, int64_t num_classes)
      : in_channels_(in_channels), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(int64_t, channels) = 512;
  TORCH_ARG(double, dropout) = 0.1;

 public:
  void check() const;
};

class AttentionHeadImpl : public torch::nn::Module {
 public:
  // With `gate_init`, the block's residual branch is scaled by a learned scalar `gate` that
  // starts there: the block's input x and output f(x) give x + gate·(f(x) − x) (the start
  // rule, attention/registry.h BlockStart); without it, f(x) as the block computes it.
  AttentionHeadImpl(const AttentionHeadOptions& options, AttentionBlock block,
                    std::optional<double> gate_init = std::nullopt);
  torch::Tensor forward(const torch::Tensor& feature);
  // What the attention block receives for a backbone feature: the reduce convolution's output.
  torch::Tensor block_input(const torch::Tensor& feature) { return reduce_->forward(feature); }
  // forward() from the block's input already computed: forward(f) = decode(f, block_input(f)).
  // Taken by value and released once the block has run, so that it does not outlive its use
  // (unless the caller keeps a copy).
  torch::Tensor decode(const torch::Tensor& feature, torch::Tensor block_input);
  AttentionBlock block() const { return block_; }
  // The scalar gate on the block's branch; undefined when the head has none.
  torch::Tensor gate() const { return gate_; }
  // Mean squares of the block's input x and of the change the head makes to it (the gated
  // branch, or f(x) − x without a gate) in the last forward in training mode, as detached
  // scalars (undefined before one): how large the block's contribution is as it trains.
  struct BranchStats {
    torch::Tensor input_ms, branch_ms;
  };
  const BranchStats& branch_stats() const { return stats_; }

  AttentionHeadOptions options;

 private:
  torch::nn::Sequential reduce_{nullptr}, post_{nullptr}, bottleneck_{nullptr};
  AttentionBlock block_;
  torch::Tensor gate_;
  BranchStats stats_;
  torch::nn::Dropout2d dropout_{nullptr};
  torch::nn::Conv2d classifier_{nullptr};
};
TORCH_MODULE(AttentionHead);

struct FCNHeadOptions {
  FCNHeadOptions(int64_t in_channels, int64_t num_classes)
      : in_channels_(in_channels), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(int64_t, channels) = 256;
  TORCH_ARG(double, dropout) = 0.1;

 public:
  void check() const;
};

class FCNHeadImpl : public torch::nn::Module {
 public:
  explicit FCNHeadImpl(const FCNHeadOptions& options);
  torch::Tensor forward(const torch::Tensor& feature);

  FCNHeadOptions options;

 private:
  torch::nn::Sequential conv_{nullptr};
  torch::nn::Dropout2d dropout_{nullptr};
  torch::nn::Conv2d classifier_{nullptr};
};
TORCH_MODULE(FCNHead);

}  // namespace attnseg
