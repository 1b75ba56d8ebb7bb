#include "attention/handcrafted.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>

namespace attnseg {

void HandcraftedOptions::check() const {
  host_.check("handcrafted");
  TORCH_CHECK(std::isfinite(sigma_) && sigma_ > 0, "handcrafted: sigma must be positive, got ", sigma_);
  TORCH_CHECK(radius_ >= 1, "handcrafted: radius must be at least 1, got ", radius_);
}

HandcraftedImpl::HandcraftedImpl(const HandcraftedOptions& options_) : options(options_) { reset(); }

void HandcraftedImpl::reset() {
  options.check();
  reset_host(options.host());
}

std::pair<int64_t, int64_t> HandcraftedImpl::centre_of_head(int64_t head) {
  static const std::pair<int64_t, int64_t> centres[] = {{0, -1}, {0, 1}, {-1, 0}, {1, 0}};
  return centres[head % 4];
}

Pattern HandcraftedImpl::build_pattern(int64_t height, int64_t width) const {
  return offset_pattern(height, width, window_offsets(options.radius(), options.radius()));
}

at::Tensor HandcraftedImpl::weights(int64_t height, int64_t width) const {
  const Offsets offsets = window_offsets(options.radius(), options.radius());
  const Pattern pattern = build_pattern(height, width);
  std::vector<at::Tensor> heads;
  for (int64_t head = 0; head < options.host().heads(); ++head) {
    const auto [cy, cx] = centre_of_head(head);
    std::vector<double> density;
    for (const auto& [dy, dx] : offsets) {
      const double r2 = static_cast<double>((dy - cy) * (dy - cy) + (dx - cx) * (dx - cx));
      density.push_back(std::exp(-r2 / (2 * options.sigma() * options.sigma())));
    }
    const at::Tensor w = at::tensor(density, at::kDouble).unsqueeze(0) * pattern.valid[0].to(at::kDouble);
    heads.push_back(w / w.sum(1, true));
  }
  return at::stack(heads, 0).to(at::kFloat);
}

at::Tensor HandcraftedImpl::attend_raster(const at::Tensor&, const at::Tensor&, const at::Tensor& v,
                                          const TokenGrid& grid) {
  if (!cached_weights_.defined() || grid.height != cached_height_ || grid.width != cached_width_ ||
      cached_weights_.device() != v.device()) {
    c10::InferenceMode normal_tensors(false);  // reused by training passes (see pattern_for)
    cached_weights_ = weights(grid.height, grid.width).to(v.device());
    cached_height_ = grid.height;
    cached_width_ = grid.width;
  }
  return functional::patterned_mix(v, pattern_for(grid.height, grid.width, v.device()), cached_weights_);
}

int64_t HandcraftedImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  const int64_t p = (2 * options.radius() + 1) * (2 * options.radius() + 1);
  return b * options.host().heads() * height * width * p * options.host().head_width();
}

}  // namespace attnseg
