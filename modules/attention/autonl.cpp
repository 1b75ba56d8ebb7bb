#include "attention/autonl.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

namespace attnseg {

namespace functional {
at::Tensor light_nonlocal(const at::Tensor& theta, const at::Tensor& phi, const at::Tensor& g, bool linear_order) {
  const int64_t b = theta.size(0), d = theta.size(1), h = theta.size(2), w = theta.size(3), c = g.size(1);
  const at::Tensor t = theta.reshape({b, d, h * w}), p = phi.reshape({b, d, -1}), v = g.reshape({b, c, -1});
  at::Tensor out;
  if (linear_order) {
    out = at::bmm(at::bmm(v, p.transpose(1, 2)), t);  // (gφᵀ) [B, C, D], then · θ
  } else {
    out = at::bmm(v, at::bmm(p.transpose(1, 2), t));  // (φᵀθ) [B, n, N], then g ·
  }
  return (out / static_cast<double>(h * w)).reshape({b, c, h, w});
}
}  // namespace functional

void LightNonLocalOptions::check() const {
  TORCH_CHECK(channels() > 0, "autonl: channels must be positive, got ", channels());
  TORCH_CHECK(reduction() >= 1 && channels() / reduction() >= 1, "autonl: reduction must be in [1, channels], got ",
              reduction());
  TORCH_CHECK(stride() >= 1, "autonl: stride must be at least 1, got ", stride());
}

LightNonLocalImpl::LightNonLocalImpl(const LightNonLocalOptions& options_) : options(options_) { reset(); }

void LightNonLocalImpl::reset() {
  options.check();
  const int64_t c = options.channels();
  query_channels_ = c / options.reduction();
  depthwise_ = register_module(
      "depthwise", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 3).padding(1).groups(c).bias(false)));
  norm_ = register_module("norm", SyncBatchNorm2d(c));
  if (options.zero_init()) torch::nn::init::zeros_(norm_->weight);
}

bool LightNonLocalImpl::linear_order(int64_t h, int64_t w) const {
  const int64_t n = h * w, s = options.stride(), reduced = ((h + s - 1) / s) * ((w + s - 1) / s);
  const int64_t c = options.channels(), d = query_channels_;
  return n * reduced * (c + d) >= n * c * d + reduced * c * d;
}

torch::Tensor LightNonLocalImpl::forward(const torch::Tensor& x) {
  const int64_t s = options.stride();
  const at::Tensor reduced = x.slice(2, 0, c10::nullopt, s).slice(3, 0, c10::nullopt, s);
  const at::Tensor theta = x.narrow(1, 0, query_channels_), phi = reduced.narrow(1, 0, query_channels_);
  const at::Tensor f = functional::light_nonlocal(theta, phi, reduced, linear_order(x.size(2), x.size(3)));
  return x + norm_(depthwise_(f));
}

int64_t LightNonLocalImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], h = shape[2], w = shape[3], n = h * w, s = options.stride();
  const int64_t reduced = ((h + s - 1) / s) * ((w + s - 1) / s), d = query_channels_;
  const int64_t products = linear_order(h, w) ? n * c * d + reduced * c * d : n * reduced * (c + d);
  return b * (products + n * c * 9);  // and the 3×3 depthwise conv
}

}  // namespace attnseg
