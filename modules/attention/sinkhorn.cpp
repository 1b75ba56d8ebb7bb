#include "attention/sinkhorn.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "attention/functional.h"
#include "core/device.h"

namespace attnseg {
namespace {
// lucidrains' log(t + eps), in the sorting logits and the Gumbel samples.
constexpr double kLogEpsilon = 1e-6;
}  // namespace

namespace functional {
at::Tensor sinkhorn_normalise(const at::Tensor& log_r, int64_t iters) {
  at::Tensor r = log_r;
  for (int64_t i = 0; i < iters; ++i) {
    r = r - at::logsumexp(r, {-1}, /*keepdim=*/true);
    r = r - at::logsumexp(r, {-2}, /*keepdim=*/true);
  }
  return r.exp();
}

namespace {
// [B, h, N, d] → [B, h, nb, bucket, d]
at::Tensor blocks_of(const at::Tensor& t, int64_t bucket_size) {
  return t.view({t.size(0), t.size(1), t.size(2) / bucket_size, bucket_size, t.size(3)});
}
}  // namespace

at::Tensor sinkhorn_sorting_matrix(const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& weight, const at::Tensor& key_valid,
                                   int64_t bucket_size, int64_t iters, double temperature,
                                   const at::Tensor& noise) {
  auto block_sums = [&](const at::Tensor& t) {
    const at::Tensor real =
        key_valid.defined() ? t * key_valid.to(t.scalar_type()).view({-1, 1}) : t;
    return blocks_of(real, bucket_size).sum(3);  // [B, h, nb, d]
  };
  const at::Tensor summaries = at::cat({block_sums(q), block_sums(k)}, -1);  // [B, h, nb, 2d]
  at::Tensor log_r =
      at::log(at::relu(at::matmul(summaries, weight.to(q.scalar_type()))) + kLogEpsilon);
  if (noise.defined()) log_r = log_r + noise;
  return sinkhorn_normalise(log_r / temperature, iters);
}

at::Tensor sinkhorn_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& weight, const at::Tensor& key_valid,
                              int64_t bucket_size, int64_t iters, double temperature,
                              const at::Tensor& noise, bool soft) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3), dv = v.size(3);
  const int64_t nb = n / bucket_size;
  const at::Tensor r =
      sinkhorn_sorting_matrix(q, k, weight, key_valid, bucket_size, iters, temperature, noise);
  const at::Tensor valid = key_valid.defined() ? key_valid.view({nb, bucket_size}) : at::Tensor();
  // [B, h, nb]: the one entry of each row the reference keeps, and where it is
  at::Tensor kept, partner;
  if (!soft) std::tie(kept, partner) = r.max(-1);
  // The sorted blocks, then each block itself: [B, h, nb, 2·bucket, ·].
  auto with_sorted = [&](const at::Tensor& t) {
    const at::Tensor blocks = blocks_of(t, bucket_size);
    if (soft) {
      // Padded tokens enter the mixture as zeros; each mixed slot is then a real key.
      const at::Tensor real =
          valid.defined() ? blocks * valid.view({nb, bucket_size, 1}).to(t.scalar_type()) : blocks;
      const at::Tensor mixed = at::matmul(r, real.flatten(3)).view(blocks.sizes());
      return at::cat({mixed, blocks}, 3);
    }
    const at::Tensor index =
        partner.view({b, h, nb, 1, 1}).expand({b, h, nb, bucket_size, t.size(3)});
    return at::cat({blocks.gather(2, index) * kept.view({b, h, nb, 1, 1}), blocks}, 3);
  };
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  at::Tensor scores =
      at::matmul(blocks_of(q, bucket_size) * scale, with_sorted(k).transpose(-1, -2));
  if (valid.defined()) {
    const at::Tensor sorted_valid =
        soft ? at::ones({b, h, nb, bucket_size}, valid.options())
             : valid.index_select(0, partner.flatten()).view({b, h, nb, bucket_size});
    const at::Tensor keys_valid =
        at::cat({sorted_valid, valid.expand({b, h, nb, bucket_size})}, -1);
    scores = scores.masked_fill(keys_valid.logical_not().unsqueeze(3),
                                -std::numeric_limits<double>::infinity());
  }
  return at::matmul(at::softmax(scores, -1), with_sorted(v)).view({b, h, n, dv});
}
}  // namespace functional

void SinkhornOptions::check() const {
  host_.check("sinkhorn");
  TORCH_CHECK(bucket_size_ >= 1, "sinkhorn: bucket_size must be at least 1, got ", bucket_size_);
  TORCH_CHECK(sinkhorn_iters_ >= 1, "sinkhorn: sinkhorn_iters must be at least 1, got ",
              sinkhorn_iters_);
  TORCH_CHECK(temperature_ > 0, "sinkhorn: temperature must be positive, got ", temperature_);
}

SinkhornImpl::SinkhornImpl(const SinkhornOptions& options_) : options(options_) {
  reset();
}

void SinkhornImpl::reset() {
  options.check();
  reset_host(options.host());
  const auto& size = options.host().map_size();
  const int64_t blocks = (size[0] * size[1] + options.bucket_size() - 1) / options.bucket_size();
  // lucidrains' SortNet: a standard normal [2d, blocks] per head.
  weight = register_parameter(
      "weight", torch::randn({options.host().heads(), 2 * options.host().head_width(), blocks}));
}

at::Tensor SinkhornImpl::weight_for(int64_t blocks) const {
  if (weight.size(2) == blocks) return weight;
  return at::upsample_linear1d(weight, {blocks}, /*align_corners=*/false);
}

at::Tensor SinkhornImpl::sorting_matrix(const at::Tensor& q, const at::Tensor& k,
                                        const TokenGrid& grid) const {
  const int64_t blocks = q.size(2) / options.bucket_size();
  return functional::sinkhorn_sorting_matrix(q, k, weight_for(blocks), grid.key_valid,
                                             options.bucket_size(), options.sinkhorn_iters(),
                                             options.temperature(), {});
}

at::Tensor SinkhornImpl::attend(const at::Tensor& q_in, const at::Tensor& k_in,
                                const at::Tensor& v_in, const TokenGrid& grid) {
  // The pairing takes each row's largest entry, and log(ReLU(x) + ε) magnifies rounding near 0:
  // in float under any autocast.
  AutocastDisabled in_float;
  const at::Tensor q = functional::at_least_float(q_in), k = functional::at_least_float(k_in),
                   v = functional::at_least_float(v_in);
  const int64_t blocks = q.size(2) / options.bucket_size();
  at::Tensor noise;
  if (is_training() && options.gumbel()) {
    // lucidrains' sample_gumbel: −log(−log(u + ε) + ε), u uniform in [0, 1).
    const at::Tensor u = at::rand({q.size(0), q.size(1), blocks, blocks}, q.options());
    noise = -at::log(-at::log(u + kLogEpsilon) + kLogEpsilon);
  }
  return functional::sinkhorn_attention(q, k, v, weight_for(blocks), grid.key_valid,
                                        options.bucket_size(), options.sinkhorn_iters(),
                                        options.temperature(), noise, options.soft());
}

int64_t SinkhornImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width(),
                nb = n / options.bucket_size();
  // the sorting logits; QKᵀ and AV per block; with soft, R·K and R·V over every block
  return b * h *
         (2 * d * nb * nb + 4 * n * options.bucket_size() * d +
          (options.soft() ? 2 * nb * n * d : 0));
}

}  // namespace attnseg
