#include "attention/product_key.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/device.h"

namespace attnseg {

namespace functional {
std::tuple<at::Tensor, at::Tensor> product_key_topk(const at::Tensor& q, const at::Tensor& sub_keys, int64_t topk) {
  const int64_t half = q.size(-1) / 2, n_keys = sub_keys.size(2);
  const at::Tensor keys = sub_keys.to(q.scalar_type()).unsqueeze(0);  // [1, h, 2, n_keys, e]
  // Each half against its n_keys sub-keys: [B, h, N, n_keys].
  const at::Tensor s1 = at::matmul(q.narrow(-1, 0, half), keys.select(2, 0).transpose(-2, -1));
  const at::Tensor s2 = at::matmul(q.narrow(-1, half, half), keys.select(2, 1).transpose(-2, -1));
  const auto [t1, i1] = s1.topk(topk, -1);
  const auto [t2, i2] = s2.topk(topk, -1);
  // The k² candidates: scores and product-key indices, [B, h, N, k·k].
  const at::Tensor scores = (t1.unsqueeze(-1) + t2.unsqueeze(-2)).flatten(-2);
  const at::Tensor indices = (i1.unsqueeze(-1) * n_keys + i2.unsqueeze(-2)).flatten(-2);
  const auto [best, where] = scores.topk(topk, -1);
  return {best, indices.gather(-1, where)};
}

at::Tensor product_key_read(const at::Tensor& scores, const at::Tensor& indices, const at::Tensor& values) {
  const at::Tensor weights = at::softmax(scores, -1).unsqueeze(-2);  // [B, h, N, 1, k]
  std::vector<int64_t> shape = indices.sizes().vec();
  shape.push_back(values.size(1));
  const at::Tensor rows = values.to(scores.scalar_type()).index_select(0, indices.flatten()).view(shape);
  return at::matmul(weights, rows).squeeze(-2);
}
}  // namespace functional

void ProductKeyOptions::check() const {
  host_.check("product_key");
  TORCH_CHECK(host_.head_width() % 2 == 0, "product_key: the head width (dim_head, or channels / heads) must be even ",
              "to split the query in halves, got ", host_.head_width());
  TORCH_CHECK(n_keys_ >= 1, "product_key: n_keys must be at least 1, got ", n_keys_);
  TORCH_CHECK(topk_ >= 1 && topk_ <= n_keys_, "product_key: topk must be between 1 and n_keys (", n_keys_, "), got ",
              topk_);
}

ProductKeyImpl::ProductKeyImpl(const ProductKeyOptions& options_) : options(options_) {
  reset();
}

void ProductKeyImpl::reset() {
  options.check();
  reset_host(options.host());
  // The keys and values are not read: the host builds no projection for them (inputs()).
  const int64_t h = options.host().heads(), d = options.host().head_width(), n = options.n_keys();
  // XLM's initialisations: sub-keys uniform in ±1/√(half), values normal with std 1/√(v_dim).
  const double bound = 1.0 / std::sqrt(static_cast<double>(d / 2));
  sub_keys = register_parameter("sub_keys", torch::rand({h, 2, n, d / 2}) * 2 * bound - bound);
  values = register_parameter("values", torch::randn({n * n, d}) / std::sqrt(static_cast<double>(d)));
  if (options.query_norm()) query_norm = register_module("query_norm", torch::nn::BatchNorm1d(h * d));
}

at::Tensor ProductKeyImpl::attend(const at::Tensor& q, const at::Tensor&, const at::Tensor&, const TokenGrid&) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3);
  // Top-k over scores: a bf16 score flips the keys chosen, so the memory runs in the type of
  // its parameters (float unless the block was converted), whatever the autocast.
  AutocastDisabled in_float;
  at::Tensor query = q.to(values.scalar_type());
  if (query_norm) {
    query = query_norm(query.permute({0, 2, 1, 3}).reshape({b * n, h * d})).view({b, n, h, d}).permute({0, 2, 1, 3});
  }
  const auto [scores, indices] = functional::product_key_topk(query, sub_keys, options.topk());
  scored_keys_ = b * h * n * 2 * options.n_keys();
  return functional::product_key_read(scores, indices, values);
}

int64_t ProductKeyImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width();
  // both halves (d/2 each) against n_keys sub-keys, then the weighted read of topk rows
  return b * h * n * (options.n_keys() * d + options.topk() * d);
}

}  // namespace attnseg
