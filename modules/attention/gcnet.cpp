#include "attention/gcnet.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

namespace attnseg {

namespace functional {
at::Tensor global_context(const at::Tensor& x, const at::Tensor& mask) {
  const int64_t b = x.size(0), c = x.size(1);
  const at::Tensor weights = mask.reshape({b, -1, 1}).softmax(1);  // [B, N, 1]
  return at::bmm(x.reshape({b, c, -1}), weights).reshape({b, c, 1, 1});
}
}  // namespace functional

void GlobalContextOptions::check() const {
  TORCH_CHECK(channels() > 0, "gcnet: channels must be positive, got ", channels());
  TORCH_CHECK(reduction() >= 1 && channels() / reduction() >= 1, "gcnet: reduction must be in [1, channels], got ",
              reduction());
}

GlobalContextImpl::GlobalContextImpl(const GlobalContextOptions& options_) : options(options_) { reset(); }

void GlobalContextImpl::reset() {
  options.check();
  const int64_t c = options.channels();
  planes_ = c / options.reduction();
  mask_ = register_module("mask", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, 1, 1)));
  // The reference's kaiming_init(mode='fan_in') on the mask conv, bias 0.
  torch::nn::init::kaiming_normal_(mask_->weight, 0.0, torch::kFanIn, torch::kReLU);
  torch::nn::init::zeros_(mask_->bias);
  down_ = register_module("down", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, planes_, 1)));
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({planes_, 1, 1})));
  up_ = register_module("up", torch::nn::Conv2d(torch::nn::Conv2dOptions(planes_, c, 1)));
  if (options.zero_init()) {
    torch::nn::init::zeros_(up_->weight);
    torch::nn::init::zeros_(up_->bias);
  }
}

torch::Tensor GlobalContextImpl::forward(const torch::Tensor& x) {
  const at::Tensor context = functional::global_context(x, mask_(x));
  // LayerNorm in its parameters' type: CPU autocast leaves it to the input's type, and a bf16
  // input with float weights is an error there.
  const at::Tensor down = down_(context);
  return x + up_(at::relu(norm_(down.to(norm_->weight.scalar_type()))));
}

int64_t GlobalContextImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], n = shape[2] * shape[3];
  // Mask conv and pooling over N positions, then the bottleneck on one vector.
  return b * (n * c + n * c + 2 * c * planes_);
}

}  // namespace attnseg
