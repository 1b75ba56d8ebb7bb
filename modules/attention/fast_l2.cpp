#include "attention/fast_l2.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include "core/batch_norm.h"

namespace attnseg {

namespace functional {
at::Tensor fast_l2_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t b = q.size(0), d = q.size(1), c = v.size(1), h = q.size(2), w = q.size(3), n = h * w;
  // l2 over channels, with the same floor on the norm as torch's F.normalize (eps 1e-12).
  const at::Tensor qn = q.reshape({b, d, n}) / q.reshape({b, d, n}).norm(2, 1, true).clamp_min(1e-12);
  const at::Tensor kn = k.reshape({b, d, n}) / k.reshape({b, d, n}).norm(2, 1, true).clamp_min(1e-12);
  const at::Tensor context = at::bmm(kn, v.reshape({b, c, n}).transpose(1, 2));  // [B, D, C]
  return (at::bmm(context.transpose(1, 2), qn) / static_cast<double>(n)).reshape({b, c, h, w});
}
}  // namespace functional

void FastL2Options::check() const {
  TORCH_CHECK(channels() > 0, "fast_l2: channels must be positive, got ", channels());
  TORCH_CHECK(reduction() > 0 && channels() / reduction() >= 1, "fast_l2: reduction must be in [1, channels], got ",
              reduction());
}

FastL2Impl::FastL2Impl(const FastL2Options& options_) : options(options_) { reset(); }

void FastL2Impl::reset() {
  options.check();
  const int64_t c = options.channels();
  const int64_t d = c / options.reduction();
  auto conv_bn = [](int64_t in, int64_t out) {
    return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(false)),
                                 SyncBatchNorm2d(out));
  };
  query_ = register_module("query", conv_bn(c, d));
  key_ = register_module("key", conv_bn(c, d));
  value_ = register_module("value", conv_bn(c, c));
  out_ = register_module("out", conv_bn(c, c));
  if (options.zero_init()) torch::nn::init::zeros_(out_[1]->as<SyncBatchNorm2d>()->weight);
}

torch::Tensor FastL2Impl::forward(const torch::Tensor& x) {
  return x + out_->forward(functional::fast_l2_attention(query_->forward(x), key_->forward(x), value_->forward(x)));
}

int64_t FastL2Impl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], n = shape[2] * shape[3], d = c / options.reduction();
  // Projections q, k (d each), v and out (c each); context K̂ᵀV (n·d·c) and Q̂·context (n·d·c).
  return b * (n * c * (2 * d + 2 * c) + 2 * n * d * c);
}

}  // namespace attnseg
