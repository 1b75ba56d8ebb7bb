#include "attention/isa.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>

#include "attention/functional.h"
#include "core/batch_norm.h"

namespace attnseg {

namespace functional {
at::Tensor interlaced_groups(const at::Tensor& x, int64_t ph, int64_t pw) {
  const int64_t b = x.size(0), c = x.size(1), gh = x.size(2) / ph, gw = x.size(3) / pw;
  return x.reshape({b, c, gh, ph, gw, pw}).permute({0, 3, 5, 1, 2, 4}).reshape({b * ph * pw, c, gh, gw});
}
at::Tensor from_interlaced_groups(const at::Tensor& g, int64_t batch, int64_t ph, int64_t pw) {
  const int64_t c = g.size(1), gh = g.size(2), gw = g.size(3);
  return g.reshape({batch, ph, pw, c, gh, gw}).permute({0, 3, 4, 1, 5, 2}).reshape({batch, c, gh * ph, gw * pw});
}
at::Tensor local_groups(const at::Tensor& x, int64_t ph, int64_t pw) {
  const int64_t b = x.size(0), c = x.size(1), gh = x.size(2) / ph, gw = x.size(3) / pw;
  return x.reshape({b, c, gh, ph, gw, pw}).permute({0, 2, 4, 1, 3, 5}).reshape({b * gh * gw, c, ph, pw});
}
}  // namespace functional

namespace {
torch::nn::Sequential conv_bn_relu(int64_t in, int64_t out) {
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(false)),
                               SyncBatchNorm2d(out), torch::nn::ReLU());
}
torch::nn::Sequential two_conv_bn_relu(int64_t in, int64_t out) {
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(false)),
                               SyncBatchNorm2d(out), torch::nn::ReLU(),
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 1).bias(false)),
                               SyncBatchNorm2d(out), torch::nn::ReLU());
}
}  // namespace

IsaRelationImpl::IsaRelationImpl(int64_t channels, int64_t key_channels) {
  query = register_module("query", two_conv_bn_relu(channels, key_channels));
  key = register_module("key", two_conv_bn_relu(channels, key_channels));
  value = register_module("value", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 1).bias(false)));
  out = register_module("out", conv_bn_relu(channels, channels));
}

torch::Tensor IsaRelationImpl::forward(const torch::Tensor& x) {
  return out->forward(functional::nonlocal_attention(query->forward(x), key->forward(x), value(x)));
}

void IsaOptions::check() const {
  TORCH_CHECK(channels() > 0, "isa: channels must be positive, got ", channels());
  TORCH_CHECK(reduction() > 0 && channels() / reduction() >= 1, "isa: reduction must be in [1, channels], got ",
              reduction());
  const auto& f = down_factor();
  TORCH_CHECK(f.size() == 2 && f[0] > 0 && f[1] > 0, "isa: down_factor must be [height, width] > 0");
}

IsaImpl::IsaImpl(const IsaOptions& options_) : options(options_) { reset(); }

void IsaImpl::reset() {
  options.check();
  const int64_t c = options.channels();
  long_range = register_module("long_range", IsaRelation(c, c / options.reduction()));
  short_range = register_module("short_range", IsaRelation(c, c / options.reduction()));
}

torch::Tensor IsaImpl::relation(const torch::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ph = options.down_factor()[0], pw = options.down_factor()[1];
  const int64_t gh = (h + ph - 1) / ph, gw = (w + pw - 1) / pw;
  const int64_t pad_h = gh * ph - h, pad_w = gw * pw - w;
  const at::Tensor padded =
      pad_h || pad_w ? at::constant_pad_nd(x, {pad_w / 2, pad_w - pad_w / 2, pad_h / 2, pad_h - pad_h / 2}) : x;
  const at::Tensor far = functional::from_interlaced_groups(
      long_range(functional::interlaced_groups(padded, ph, pw)), b, ph, pw);
  const at::Tensor near = short_range(functional::local_groups(far, ph, pw))
                              .reshape({b, gh, gw, c, ph, pw})
                              .permute({0, 3, 1, 4, 2, 5})
                              .reshape({b, c, gh * ph, gw * pw});
  return near.slice(2, pad_h / 2, pad_h / 2 + h).slice(3, pad_w / 2, pad_w / 2 + w);
}

torch::Tensor IsaImpl::forward(const torch::Tensor& x) { return x + relation(x); }

int64_t IsaImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1];
  const int64_t ph = options.down_factor()[0], pw = options.down_factor()[1];
  const int64_t gh = (shape[2] + ph - 1) / ph, gw = (shape[3] + pw - 1) / pw;
  const int64_t n = gh * ph * gw * pw, d = c / options.reduction();  // padded tokens
  // Per pass: query and key (c·d + d·d each), value and output (c² each) per token; scores
  // and weighted sums within groups of gh·gw (long range) or ph·pw (short range) tokens.
  const int64_t projections = n * (2 * (c * d + d * d) + 2 * c * c);
  const int64_t long_products = n * gh * gw * (d + c), short_products = n * ph * pw * (d + c);
  return b * (2 * projections + long_products + short_products);
}

}  // namespace attnseg
