// Deep Residual Learning for Image Recognition (He et al., arXiv:1512.03385), ResNet-18 and
// ResNet-50, with the optional deep stem of "Bag of Tricks" (arXiv:1812.01187, ResNet-D /
// mmsegmentation's ResNetV1c) and dilated last stages for output stride 8 or 16 (DeepLab,
// arXiv:1606.00915). Module names follow torchvision (conv1, bn1, layerK.i.convJ, downsample)
// so that its checkpoints can be mapped onto this one.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

namespace attnseg {

struct ResNetOptions {
  explicit ResNetOptions(int64_t depth) : depth_(depth) {}
  TORCH_ARG(int64_t, depth);  // 18 or 50
  TORCH_ARG(bool, deep_stem) = true;
  TORCH_ARG(int64_t, output_stride) = 8;  // 8 or 16
  // Multiplies every stage width (64, 128, 256, 512 at 1.0) for small CPU runs.
  TORCH_ARG(double, width) = 1.0;
  TORCH_ARG(int64_t, in_channels) = 3;

 public:
  void check() const;
};

struct BackboneFeatures {
  torch::Tensor stage3;  // input to the auxiliary head
  torch::Tensor stage4;  // input to the decode head
};

class ResNetImpl : public torch::nn::Module {
 public:
  explicit ResNetImpl(const ResNetOptions& options);
  void reset();
  BackboneFeatures forward(const torch::Tensor& x);

  int64_t stage3_channels() const { return stage_channels_[2]; }
  int64_t stage4_channels() const { return stage_channels_[3]; }
  // Theoretical receptive field, in input pixels, of one stage-4 feature.
  int64_t receptive_field() const { return receptive_field_; }
  int64_t output_stride() const { return options.output_stride(); }

  ResNetOptions options;

 private:
  torch::nn::Sequential stem_{nullptr};
  torch::nn::Sequential layers_[4] = {nullptr, nullptr, nullptr, nullptr};
  std::vector<int64_t> stage_channels_;
  int64_t receptive_field_ = 0;
};
TORCH_MODULE(ResNet);

}  // namespace attnseg
