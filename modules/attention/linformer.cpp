#include "attention/linformer.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/torch_compat.h"

namespace attnseg {

namespace functional {
at::Tensor linformer_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& e,
                               const at::Tensor& f) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return compat::dense_attention(q, at::matmul(e.to(k.scalar_type()), k), at::matmul(f.to(v.scalar_type()), v), scale);
}
}  // namespace functional

void LinformerOptions::check() const {
  host_.check("linformer");
  TORCH_CHECK(k_ >= 1, "linformer: k must be at least 1, got ", k_);
}

LinformerImpl::LinformerImpl(const LinformerOptions& options_) : options(options_) {
  reset();
}

void LinformerImpl::reset() {
  options.check();
  reset_host(options.host());
  const auto& size = options.host().map_size();
  const int64_t n0 = size[0] * size[1], k = options.k();
  // tatp22's default: each projection an N×k linear map with Xavier-normal weights.
  const double spread = std::sqrt(2.0 / static_cast<double>(n0 + k));
  e = register_parameter("e", torch::randn({k, size[0], size[1]}) * spread);
  f = register_parameter("f", torch::randn({k, size[0], size[1]}) * spread);
}

at::Tensor LinformerImpl::projection_for(const at::Tensor& p, const TokenGrid& grid) const {
  const at::Tensor map = resample_to_grid(p, grid);
  if (p.size(1) == grid.height && p.size(2) == grid.width) return map;
  return map * (static_cast<double>(p.size(1) * p.size(2)) / static_cast<double>(grid.length()));
}

at::Tensor LinformerImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const TokenGrid& grid) {
  return functional::linformer_attention(q, k, v, projection_for(e, grid), projection_for(f, grid));
}

int64_t LinformerImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width(), k = options.k();
  return b * h * n * k * d * 4;  // E K and F V, then Q (EK)ᵀ and the weighted sum of FV
}

}  // namespace attnseg
