#include "attention/cbam.h"

#include <ATen/ATen.h>

namespace attnseg {

void CbamOptions::check() const {
  TORCH_CHECK(channels() > 0, "cbam: channels must be positive, got ", channels());
  TORCH_CHECK(reduction() > 0, "cbam: reduction must be positive, got ", reduction());
  TORCH_CHECK(kernel_size() > 0 && kernel_size() % 2 == 1, "cbam: kernel_size must be odd and positive, got ",
              kernel_size());
}

CbamImpl::CbamImpl(const CbamOptions& options_) : options(options_) { reset(); }

void CbamImpl::reset() {
  options.check();
  const int64_t c = options.channels();
  const int64_t hidden = std::max<int64_t>(c / options.reduction(), 1);
  fc1_ = register_module("fc1", torch::nn::Linear(c, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, c));
  const int64_t k = options.kernel_size();
  spatial_ = register_module("spatial", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 1, k).padding(k / 2).bias(false)));
  // The reference's BN momentum 0.01 (PyTorch convention: weight of the new batch).
  norm_ = register_module("norm", SyncBatchNorm2d(torch::nn::BatchNorm2dOptions(1).momentum(0.01)));
}

torch::Tensor CbamImpl::channel_gate(const torch::Tensor& x) {
  auto mlp = [&](const at::Tensor& d) { return fc2_(at::relu(fc1_(d))); };
  const at::Tensor avg = x.mean({2, 3}), max = x.amax({2, 3});
  return at::sigmoid(mlp(avg) + mlp(max)).unsqueeze(2).unsqueeze(3);
}

torch::Tensor CbamImpl::spatial_gate(const torch::Tensor& x) {
  const at::Tensor pooled = at::cat({x.amax(1, /*keepdim=*/true), x.mean(1, /*keepdim=*/true)}, 1);
  return at::sigmoid(norm_(spatial_(pooled)));
}

torch::Tensor CbamImpl::forward(const torch::Tensor& x) {
  const at::Tensor channel_gated = x * channel_gate(x);
  return channel_gated * spatial_gate(channel_gated);
}

int64_t CbamImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], n = shape[2] * shape[3], k = options.kernel_size();
  const int64_t hidden = std::max<int64_t>(c / options.reduction(), 1);
  // Shared MLP on two descriptors, the 2→1 k×k conv, and the two gate products.
  return b * (2 * 2 * c * hidden + n * 2 * k * k + 2 * n * c);
}

}  // namespace attnseg
