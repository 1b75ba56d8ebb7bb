#include "attention/star.h"

#include <ATen/ATen.h>

#include <cmath>

namespace attnseg {

namespace {
Pattern star_pattern(int64_t height, int64_t width, int64_t radius) {
  const int64_t n = height * width;
  return concat_patterns({offset_pattern(height, width, window_offsets(radius, radius)),
                          same_keys(n, at::full({1}, n, at::kLong))});
}
}  // namespace

namespace functional {
at::Tensor star_satellites(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& relay_k,
                           const at::Tensor& relay_v, int64_t height, int64_t width, int64_t radius) {
  return patterned_attention(q, at::cat({k, relay_k}, 2), at::cat({v, relay_v}, 2),
                             star_pattern(height, width, radius).to(q.device()),
                             1.0 / std::sqrt(static_cast<double>(q.size(3))));
}
}  // namespace functional

void StarOptions::check() const {
  host_.check("star");
  TORCH_CHECK(radius_ >= 1, "star: radius must be at least 1, got ", radius_);
}

StarImpl::StarImpl(const StarOptions& options_) : options(options_) { reset(); }

void StarImpl::reset() {
  options.check();
  reset_host(options.host());
}

Pattern StarImpl::build_pattern(int64_t height, int64_t width) const {
  return star_pattern(height, width, options.radius());
}

std::vector<std::vector<int64_t>> StarImpl::extra_key_sources(int64_t height, int64_t width) const {
  const std::vector<int64_t> all = every_pixel(height, width);
  return {all};
}

at::Tensor StarImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const TokenGrid& grid) {
  // The relay: the tokens' mean, then one attention over itself and every satellite.
  const at::Tensor rq = q.mean(2, true), rk = k.mean(2, true), rv = v.mean(2, true);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const at::Tensor relay_weights = at::softmax(at::matmul(rq * scale, at::cat({rk, k}, 2).transpose(-1, -2)), -1);
  const at::Tensor relay = at::matmul(relay_weights.to(v.scalar_type()), at::cat({rv, v}, 2));  // [B, h, 1, d]
  return attend_pattern(q, k, v, grid.height, grid.width, rk, relay);
}

int64_t StarImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  const int64_t n = height * width;
  return PatternedBlockImpl::core_macs_on(b, height, width) +
         2 * b * options.host().heads() * (n + 1) * options.host().head_width();
}

}  // namespace attnseg
