#include "backbone/resnet.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/pooling.h>

#include <cmath>

#include "core/batch_norm.h"

namespace attnseg {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t dilation = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k)
                        .stride(stride)
                        .padding(dilation * (k / 2))
                        .dilation(dilation)
                        .bias(false));
}

// Tracks the receptive field while layers are added: rf grows by (k−1)·dilation·jump.
struct ReceptiveField {
  int64_t rf = 1, jump = 1;
  void add(int64_t k, int64_t stride, int64_t dilation = 1) {
    rf += (k - 1) * dilation * jump;
    jump *= stride;
  }
};

class BlockImpl : public nn::Module {
 public:
  BlockImpl(bool bottleneck, int64_t in, int64_t planes, int64_t stride, int64_t dilation,
            ReceptiveField& field)
      : bottleneck_(bottleneck) {
    const int64_t out = bottleneck ? planes * 4 : planes;
    if (bottleneck) {
      conv1_ = register_module("conv1", conv(in, planes, 1));
      bn1_ = register_module("bn1", SyncBatchNorm2d(planes));
      conv2_ = register_module("conv2", conv(planes, planes, 3, stride, dilation));
      bn2_ = register_module("bn2", SyncBatchNorm2d(planes));
      conv3_ = register_module("conv3", conv(planes, out, 1));
      bn3_ = register_module("bn3", SyncBatchNorm2d(out));
      field.add(3, stride, dilation);
    } else {
      conv1_ = register_module("conv1", conv(in, planes, 3, stride, dilation));
      bn1_ = register_module("bn1", SyncBatchNorm2d(planes));
      conv2_ = register_module("conv2", conv(planes, planes, 3, 1, dilation));
      bn2_ = register_module("bn2", SyncBatchNorm2d(planes));
      field.add(3, stride, dilation);
      field.add(3, 1, dilation);
    }
    if (stride != 1 || in != out) {
      downsample_ = register_module(
          "downsample", nn::Sequential(conv(in, out, 1, stride), SyncBatchNorm2d(out)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = torch::relu(bn1_(conv1_(x)));
    if (bottleneck_) {
      y = torch::relu(bn2_(conv2_(y)));
      y = bn3_(conv3_(y));
    } else {
      y = bn2_(conv2_(y));
    }
    return torch::relu(y + (downsample_ ? downsample_->forward(x) : x));
  }

 private:
  bool bottleneck_;
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  SyncBatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(Block);

}  // namespace

void ResNetOptions::check() const {
  TORCH_CHECK(depth() == 18 || depth() == 50, "resnet: depth must be 18 or 50, got ", depth());
  TORCH_CHECK(output_stride() == 8 || output_stride() == 16, "resnet: output_stride must be 8 or 16, got ",
              output_stride());
  TORCH_CHECK(width() > 0 && width() <= 4, "resnet: width must be in (0, 4], got ", width());
  TORCH_CHECK(in_channels() > 0, "resnet: in_channels must be positive");
}

ResNetImpl::ResNetImpl(const ResNetOptions& options_) : options(options_) { reset(); }

void ResNetImpl::reset() {
  options.check();
  const bool bottleneck = options.depth() == 50;
  const std::vector<int64_t> blocks = bottleneck ? std::vector<int64_t>{3, 4, 6, 3}
                                                 : std::vector<int64_t>{2, 2, 2, 2};
  auto scaled = [&](int64_t c) {
    return std::max<int64_t>(8, static_cast<int64_t>(std::lround(c * options.width() / 8.0)) * 8);
  };
  ReceptiveField field;
  const int64_t stem = scaled(64);
  stem_ = nn::Sequential();
  if (options.deep_stem()) {
    stem_->push_back(conv(options.in_channels(), stem / 2, 3, 2));
    stem_->push_back(SyncBatchNorm2d(stem / 2));
    stem_->push_back(nn::ReLU());
    stem_->push_back(conv(stem / 2, stem / 2, 3));
    stem_->push_back(SyncBatchNorm2d(stem / 2));
    stem_->push_back(nn::ReLU());
    stem_->push_back(conv(stem / 2, stem, 3));
    stem_->push_back(SyncBatchNorm2d(stem));
    field.add(3, 2);
    field.add(3, 1);
    field.add(3, 1);
  } else {
    stem_->push_back(conv(options.in_channels(), stem, 7, 2));
    stem_->push_back(SyncBatchNorm2d(stem));
    field.add(7, 2);
  }
  stem_->push_back(nn::ReLU());
  stem_->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  field.add(3, 2);
  register_module("stem", stem_);

  // Output stride 8 dilates stages 3 and 4 (2, 4); 16 dilates stage 4 only (2). The first
  // block of a dilated stage uses half the dilation (mmsegmentation's contract_dilation).
  const bool os8 = options.output_stride() == 8;
  const int64_t strides[4] = {1, 2, os8 ? 1 : 2, 1};
  const int64_t dilations[4] = {1, 1, os8 ? 2 : 1, os8 ? 4 : 2};
  int64_t in = stem;
  stage_channels_.clear();
  for (int s = 0; s < 4; ++s) {
    const int64_t planes = scaled(64 << s);
    nn::Sequential layer;
    for (int64_t i = 0; i < blocks[s]; ++i) {
      const int64_t dilation = (i == 0 && dilations[s] > 1) ? dilations[s] / 2 : dilations[s];
      layer->push_back(Block(bottleneck, in, planes, i == 0 ? strides[s] : 1, dilation, field));
      in = bottleneck ? planes * 4 : planes;
    }
    layers_[s] = register_module("layer" + std::to_string(s + 1), layer);
    stage_channels_.push_back(in);
  }
  receptive_field_ = field.rf;

  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    }
  }
}

BackboneFeatures ResNetImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = layers_[1]->forward(layers_[0]->forward(stem_->forward(x)));
  BackboneFeatures features;
  features.stage3 = layers_[2]->forward(y);
  features.stage4 = layers_[3]->forward(features.stage3);
  return features;
}

}  // namespace attnseg
