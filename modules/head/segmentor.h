// Encoder-decoder segmentor: ResNet backbone, attention decode head on stage 4 and an
// optional auxiliary FCN head on stage 3, as in mmsegmentation's EncoderDecoder.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <string>

#include "attention/registry.h"
#include "backbone/resnet.h"
#include "config/config.h"
#include "core/labels.h"
#include "head/decode_head.h"

namespace attnseg {

struct SegmentorOutput {
  torch::Tensor logits;  // [B, K, h, w] at the feature resolution
  torch::Tensor aux;     // same, from the auxiliary head; undefined when it is disabled
};

struct SegmentorLoss {
  torch::Tensor total, decode, aux;
  torch::Tensor block;  // the attention block's own loss (AttentionBlockImpl::aux_loss), or undefined
};

// Class scores and, from the same pass, what the attention block received.
struct Prediction {
  torch::Tensor scores;       // [B, K, H, W] at the input resolution
  torch::Tensor block_input;  // [B, C, h, w] on the feature grid
};

class SegmentorImpl : public torch::nn::Module {
 public:
  SegmentorImpl(ResNet backbone, AttentionHead head, FCNHead aux_head, double aux_weight);
  SegmentorOutput forward(const torch::Tensor& images);
  // Class scores at the input resolution (bilinear upsampling of the decode head's logits).
  torch::Tensor predict(const torch::Tensor& images);
  // predict() that also keeps the attention block's input (the demo's influence map).
  Prediction predict_with_block_input(const torch::Tensor& images);
  // Cross-entropy with kIgnoreIndex, on logits upsampled to the label size; the auxiliary
  // loss is added with its weight, and the attention block's own loss of the last forward
  // (routing's commitment loss), weighted by the block's options, as it is. `pixels`, when
  // given, is what the cross-entropy sums are divided by instead of this batch's labelled
  // pixels (a data-parallel rank divides by the job's count over the number of ranks, so the
  // averaged gradient is that of the whole batch's mean).
  SegmentorLoss loss(const SegmentorOutput& out, const torch::Tensor& labels,
                     const torch::Tensor& pixels = {}) const;

  // Parameter and buffer names with shapes: two models with the same signature can share a
  // checkpoint.
  std::string signature() const;
  int64_t num_classes() const { return head_->options.num_classes(); }
  // Receptive field, in input pixels, of one output pixel through the convolutions alone
  // (the attention block excluded): the backbone's, the head's three 3×3 convolutions at the
  // output stride, and the bilinear upsampling's reach of one feature step on each side.
  int64_t conv_receptive_field() const {
    const int64_t stride = backbone_->output_stride();
    return backbone_->receptive_field() + 3 * 2 * stride + 2 * stride;
  }
  ResNet backbone() const { return backbone_; }
  AttentionHead head() const { return head_; }

 private:
  ResNet backbone_{nullptr};
  AttentionHead head_{nullptr};
  FCNHead aux_head_{nullptr};
  double aux_weight_;
};
TORCH_MODULE(Segmentor);

// The `model` section of a config, read and checked (every key, every value, the attention
// block's options) without building anything.
struct ModelSettings {
  ResNetOptions backbone{18};
  std::string pretrained;      // converted torchvision weights (tools/convert_torchvision.py)
  std::string pretrained_key;  // how errors name the key that gave it
  AttentionHeadOptions head{0, 0};  // in_channels is the backbone's, set when built
  bool aux_enabled = true;
  FCNHeadOptions aux{0, 0};
  double aux_weight = 0.4;
  ConfiguredBlock block;
  // In a data-parallel job, BatchNorm over the whole global batch (SyncBatchNorm2d); no effect
  // in one process.
  bool sync_bn = false;
};
ModelSettings read_model_settings(const ConfigNode& model, int64_t num_classes);

// Builds the model on the CPU with the generator as it stands (the caller seeds it); the
// pretrained backbone, when given, is loaded.
Segmentor build_segmentor(const ModelSettings& settings);

// Cross-entropy averaged over the pixels whose label is not kIgnoreIndex (0 when none is), or
// summed over them and divided by `pixels` when that is given.
torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels,
                                const torch::Tensor& pixels = {});

}  // namespace attnseg
