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
  AttentionHeadImpl(const AttentionHeadOptions& options, AttentionBlock block);
  torch::Tensor forward(const torch::Tensor& feature);
  // What the attention block receives for a backbone feature: the reduce convolution's output.
  torch::Tensor block_input(const torch::Tensor& feature) { return reduce_->forward(feature); }
  // forward() from the block's input already computed: forward(f) = decode(f, block_input(f)).
  // Taken by value and released once the block has run, so that it does not outlive its use
  // (unless the caller keeps a copy).
  torch::Tensor decode(const torch::Tensor& feature, torch::Tensor block_input);
  AttentionBlock block() const { return block_; }

  AttentionHeadOptions options;

 private:
  torch::nn::Sequential reduce_{nullptr}, post_{nullptr}, bottleneck_{nullptr};
  AttentionBlock block_;
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
