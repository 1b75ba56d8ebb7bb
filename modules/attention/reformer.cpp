#include "attention/reformer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/functional.h"
#include "attention/hashing.h"
#include "core/device.h"

namespace attnseg {

namespace functional {
at::Tensor lsh_attention(const at::Tensor& qk, const at::Tensor& v, const at::Tensor& buckets,
                         int64_t chunk, const at::Tensor& key_valid, bool causal) {
  // trax's mask values: a token's own score sits between any real score and a masked one.
  constexpr double kSelf = -1e5, kMasked = -1e9;
  const int64_t b = qk.size(0), h = qk.size(1), n = qk.size(2), d = qk.size(3), dv = v.size(3);
  const int64_t rounds = buckets.size(2), chunks = rounds * n / chunk;
  TORCH_CHECK(n % chunk == 0, "lsh_attention: ", n, " tokens are not a multiple of the chunk ",
              chunk);
  const auto [order, inverse] = sort_by_bucket(buckets);  // [B, h, rounds, N] each
  const at::Tensor tokens = order.flatten(2);  // the rounds end to end: [B, h, rounds·N]
  const at::Tensor sqk = gather_tokens(qk, tokens).view({b, h, chunks, chunk, d});
  const at::Tensor sv = gather_tokens(v, tokens).view({b, h, chunks, chunk, dv});
  const at::Tensor keys =
      look_one_back(sqk / sqk.norm(2, -1, /*keepdim=*/true).clamp_min(1e-12), 2);
  const at::Tensor values = look_one_back(sv, 2);
  const at::Tensor query_t = tokens.view({b, h, chunks, chunk, 1});
  const at::Tensor key_t =
      look_one_back(tokens.view({b, h, chunks, chunk}), 2).unsqueeze(-2);  // [.., 1, 2L]

  at::Tensor dots = at::matmul(sqk, keys.transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
  at::Tensor masked = at::zeros({1}, key_t.options().dtype(at::kBool));
  if (key_valid.defined())
    masked = masked | key_valid.logical_not().index_select(0, key_t.flatten()).view(key_t.sizes());
  if (causal) masked = masked | (key_t > query_t);
  dots = dots.masked_fill(masked, kMasked).masked_fill(key_t == query_t, kSelf);
  const at::Tensor lse = at::logsumexp(dots, -1, /*keepdim=*/true);  // [B, h, chunks, L, 1]
  const at::Tensor out = at::matmul(at::exp(dots - lse), values);    // [B, h, chunks, L, dv]

  // Back to token order, round by round, then the rounds weighted by their share of the mass.
  const at::Tensor per_round = gather_tokens(out.view({b, h, rounds, n, dv}), inverse);
  const at::Tensor round_lse = lse.view({b, h, rounds, n}).gather(-1, inverse);
  const at::Tensor weights = at::softmax(round_lse, 2).unsqueeze(-1);
  return (per_round * weights).sum(2);
}
}  // namespace functional

void ReformerOptions::check() const {
  host_.check("reformer");
  TORCH_CHECK(bucket_size_ >= 1, "reformer: bucket_size must be at least 1, got ", bucket_size_);
  TORCH_CHECK(n_hashes_ >= 1, "reformer: n_hashes must be at least 1, got ", n_hashes_);
  TORCH_CHECK(n_buckets_ == 0 || (n_buckets_ >= 2 && n_buckets_ % 2 == 0),
              "reformer: n_buckets must be even and at least 2 (or 0: one per chunk), got ",
              n_buckets_);
  TORCH_CHECK(max_buckets_ >= 2 && max_buckets_ % 2 == 0,
              "reformer: max_buckets must be even and at least 2, got ", max_buckets_);
}

ReformerImpl::ReformerImpl(const ReformerOptions& options_) : options(options_) {
  reset();
}

void ReformerImpl::reset() {
  options.check();
  reset_host(options.host());
  const int64_t seed =
      at::randint(std::numeric_limits<int32_t>::max(), {1}, at::kLong).item<int64_t>();
  rotation_seed_ = register_buffer("rotation_seed", at::full({1}, seed, at::kLong));
}

void ReformerImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  const at::Tensor seed = rotation_seed_.clone();
  TokenHostImpl::to(device, dtype, non_blocking);
  rotation_seed_.set_data(seed.to(device));
}

void ReformerImpl::to(torch::Dtype dtype, bool non_blocking) {
  const at::Tensor seed = rotation_seed_.clone();
  TokenHostImpl::to(dtype, non_blocking);
  rotation_seed_.set_data(seed.to(rotation_seed_.device()));
}

int64_t ReformerImpl::buckets_for(int64_t n) const {
  if (options.n_buckets() > 0) return options.n_buckets();
  const int64_t chunks = (n + options.bucket_size() - 1) / options.bucket_size();
  return std::min(options.max_buckets(), std::max<int64_t>(2, chunks + chunks % 2));
}

at::Tensor ReformerImpl::evaluation_rotations(int64_t n) const {
  // Drawn on the CPU from the saved seed, so every device and every reload hashes alike.
  at::Generator generator =
      at::make_generator<at::CPUGeneratorImpl>(rotation_seed_.item<int64_t>());
  return functional::random_rotations(options.host().head_width(), options.n_hashes(),
                                      buckets_for(n), generator);
}

at::Tensor ReformerImpl::hash(const at::Tensor& qk, const TokenGrid& grid) {
  const int64_t n = qk.size(2), n_buckets = buckets_for(n);
  const at::Tensor rotations =
      is_training() && options.redraw()
          ? functional::random_rotations(options.host().head_width(), options.n_hashes(), n_buckets)
          : evaluation_rotations(n);
  at::Tensor buckets = functional::angular_buckets(qk, rotations.to(qk.device()));
  if (grid.key_valid.defined())
    buckets = buckets.masked_fill(grid.key_valid.logical_not(), n_buckets);
  return buckets;
}

at::Tensor ReformerImpl::attend(const at::Tensor& q, const at::Tensor&, const at::Tensor& v,
                                const TokenGrid& grid) {
  // The host projects the queries in float (float_queries_keys); the values may come in bf16
  // under autocast: hashing and softmax stay in float.
  AutocastDisabled in_float;
  const at::Tensor qk = functional::at_least_float(q);
  return functional::lsh_attention(qk, functional::at_least_float(v), hash(qk.detach(), grid), options.bucket_size(),
                                   grid.key_valid, options.causal())
      .to(v.scalar_type());
}

int64_t ReformerImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width(), r = options.n_hashes();
  // the rotations (n·d·r·n_buckets/2), then per round each token's scores and weighted sum
  // over two chunks
  return b * h * n * r * (d * buckets_for(n) / 2 + 2 * options.bucket_size() * 2 * d);
}

}  // namespace attnseg
