#include "head/decode_head.h"

#include <c10/core/GradMode.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/init.h>

#include "core/batch_norm.h"

namespace attnseg {

namespace nn = torch::nn;

nn::Sequential conv_bn_relu(int64_t in, int64_t out, int64_t kernel) {
  return nn::Sequential(
      nn::Conv2d(nn::Conv2dOptions(in, out, kernel).padding(kernel / 2).bias(false)),
      SyncBatchNorm2d(out), nn::ReLU());
}

namespace {

nn::Conv2d classifier(int64_t in, int64_t classes) {
  nn::Conv2d conv(nn::Conv2dOptions(in, classes, 1));
  // mmsegmentation's BaseDecodeHead: normal(0, 0.01) weights, zero bias.
  nn::init::normal_(conv->weight, 0.0, 0.01);
  nn::init::zeros_(conv->bias);
  return conv;
}

}  // namespace

void AttentionHeadOptions::check() const {
  TORCH_CHECK(channels() > 0, "head.channels must be positive, got ", channels());
  TORCH_CHECK(num_classes() > 1, "at least two classes are needed, got ", num_classes());
  TORCH_CHECK(dropout() >= 0 && dropout() < 1, "head.dropout must be in [0, 1), got ", dropout());
}

void FCNHeadOptions::check() const {
  TORCH_CHECK(channels() > 0, "aux_head.channels must be positive, got ", channels());
  TORCH_CHECK(dropout() >= 0 && dropout() < 1, "aux_head.dropout must be in [0, 1), got ", dropout());
}

AttentionHeadImpl::AttentionHeadImpl(const AttentionHeadOptions& options_, AttentionBlock block,
                                     std::optional<double> gate_init)
    : options(options_), block_(std::move(block)) {
  TORCH_CHECK(block_, "attention head: no attention block given");
  options.check();
  reduce_ = register_module("reduce", conv_bn_relu(options.in_channels(), options.channels(), 3));
  register_module("attention", block_);
  if (gate_init) gate_ = register_parameter("gate", torch::full({1}, *gate_init));
  post_ = register_module("post", conv_bn_relu(options.channels(), options.channels(), 3));
  bottleneck_ = register_module(
      "bottleneck", conv_bn_relu(options.in_channels() + options.channels(), options.channels(), 3));
  dropout_ = register_module("dropout", nn::Dropout2d(options.dropout()));
  classifier_ = register_module("classifier", classifier(options.channels(), options.num_classes()));
}

torch::Tensor AttentionHeadImpl::forward(const torch::Tensor& feature) {
  return decode(feature, block_input(feature));
}

torch::Tensor AttentionHeadImpl::decode(const torch::Tensor& feature, torch::Tensor block_input) {
  torch::Tensor attended = block_->forward(block_input);
  if (gate_.defined()) attended = block_input + gate_ * (attended - block_input);
  if (is_training()) {
    c10::AutoGradMode no_grad(false);
    stats_.input_ms = block_input.detach().to(torch::kFloat).pow(2).mean();
    stats_.branch_ms = (attended.detach().to(torch::kFloat) - block_input.detach().to(torch::kFloat)).pow(2).mean();
  }
  block_input.reset();
  torch::Tensor y = post_->forward(attended);
  attended.reset();
  y = bottleneck_->forward(torch::cat({feature, y}, 1));
  return classifier_(dropout_(y));
}

FCNHeadImpl::FCNHeadImpl(const FCNHeadOptions& options_) : options(options_) {
  options.check();
  conv_ = register_module("conv", conv_bn_relu(options.in_channels(), options.channels(), 3));
  dropout_ = register_module("dropout", nn::Dropout2d(options.dropout()));
  classifier_ = register_module("classifier", classifier(options.channels(), options.num_classes()));
}

torch::Tensor FCNHeadImpl::forward(const torch::Tensor& feature) {
  return classifier_(dropout_(conv_->forward(feature)));
}

}  // namespace attnseg
