#include "attention/nonlocal.h"

#include <torch/nn/init.h>

#include "attention/functional.h"

namespace attnseg {

void NonLocalOptions::check() const {
  TORCH_CHECK(channels() > 0, "nonlocal: channels must be positive, got ", channels());
  TORCH_CHECK(reduction() > 0 && channels() % reduction() == 0, "nonlocal: reduction must divide channels (",
              channels(), "), got ", reduction());
}

NonLocalImpl::NonLocalImpl(const NonLocalOptions& options_) : options(options_) { reset(); }

void NonLocalImpl::reset() {
  options.check();
  const int64_t c = options.channels(), inner = c / options.reduction();
  auto conv1x1 = [](int64_t in, int64_t out, bool bias) {
    return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(bias));
  };
  theta_ = register_module("theta", conv1x1(c, inner, true));
  phi_ = register_module("phi", conv1x1(c, inner, true));
  g_ = register_module("g", conv1x1(c, inner, true));
  out_ = register_module("out", conv1x1(inner, c, false));
  norm_ = register_module("norm", SyncBatchNorm2d(c));
  if (options.zero_init()) torch::nn::init::zeros_(norm_->weight);
}

torch::Tensor NonLocalImpl::forward(const torch::Tensor& x) {
  const torch::Tensor y = functional::nonlocal_attention(theta_(x), phi_(x), g_(x));
  return x + norm_(out_(y));
}

int64_t NonLocalImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], n = shape[2] * shape[3];
  const int64_t inner = c / options.reduction();
  const int64_t projections = 4 * b * n * c * inner;  // theta, phi, g and the output conv
  const int64_t products = 2 * b * n * n * inner;     // QKᵀ and the attention-weighted sum
  return projections + products;
}

}  // namespace attnseg
