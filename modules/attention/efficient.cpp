#include "attention/efficient.h"

#include <ATen/ATen.h>

namespace attnseg {

namespace functional {
at::Tensor efficient_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads) {
  const int64_t b = q.size(0), dk = q.size(1), dv = v.size(1), h = q.size(2), w = q.size(3);
  TORCH_CHECK(dk % heads == 0 && dv % heads == 0, "efficient attention: channels ", dk, "/", dv,
              " do not split into ", heads, " heads");
  const at::Tensor qh = q.reshape({b * heads, dk / heads, h * w}).softmax(1);
  const at::Tensor kh = k.reshape({b * heads, dk / heads, h * w}).softmax(2);
  const at::Tensor vh = v.reshape({b * heads, dv / heads, h * w});
  const at::Tensor context = at::bmm(kh, vh.transpose(1, 2));  // [BH, dk, dv]
  return at::bmm(context.transpose(1, 2), qh).reshape({b, dv, h, w});
}
}  // namespace functional

void EfficientAttentionOptions::check() const {
  TORCH_CHECK(channels() > 0, "efficient: channels must be positive, got ", channels());
  TORCH_CHECK(key_channels() >= 0 && value_channels() >= 0,
              "efficient: key_channels and value_channels must be positive (or 0: channels / 2)");
  const int64_t dk = key_width(), dv = value_width();
  TORCH_CHECK(heads() >= 1 && dk % heads() == 0 && dv % heads() == 0, "efficient: key_channels ", dk,
              " and value_channels ", dv, " must split into heads=", heads());
}

EfficientAttentionImpl::EfficientAttentionImpl(const EfficientAttentionOptions& options_) : options(options_) {
  reset();
}

void EfficientAttentionImpl::reset() {
  options.check();
  const int64_t c = options.channels();
  dk_ = options.key_width();
  dv_ = options.value_width();
  auto conv = [](int64_t in, int64_t out) { return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)); };
  keys_ = register_module("keys", conv(c, dk_));
  queries_ = register_module("queries", conv(c, dk_));
  values_ = register_module("values", conv(c, dv_));
  reprojection_ = register_module("reprojection", conv(dv_, c));
}

torch::Tensor EfficientAttentionImpl::forward(const torch::Tensor& x) {
  const at::Tensor y = functional::efficient_attention(queries_(x), keys_(x), values_(x), options.heads());
  return x + reprojection_(y);
}

int64_t EfficientAttentionImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], n = shape[2] * shape[3], heads = options.heads();
  const int64_t projections = b * n * c * (2 * dk_ + dv_) + b * n * dv_ * c;
  // Per head: context K_hᵀV_h (n·dk/h·dv/h), then the queries read it (n·dk/h·dv/h).
  const int64_t products = 2 * b * heads * n * (dk_ / heads) * (dv_ / heads);
  return projections + products;
}

}  // namespace attnseg
