#include "attention/etc.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace attnseg {

void EtcOptions::check() const {
  host_.check("etc");
  TORCH_CHECK(window_ >= 1 && window_ % 2 == 1, "etc: window must be odd and positive, got ", window_);
  TORCH_CHECK(global_grid_.size() == 2 && global_grid_[0] >= 1 && global_grid_[1] >= 1,
              "etc: global_grid must be [rows, columns] of at least 1 each");
}

EtcImpl::EtcImpl(const EtcOptions& options_) : options(options_) { reset(); }

void EtcImpl::reset() {
  options.check();
  reset_host(options.host());
}

Regions EtcImpl::regions(int64_t height, int64_t width) const {
  return map_regions(height, width, options.global_grid()[0], options.global_grid()[1]);
}

Pattern EtcImpl::build_pattern(int64_t height, int64_t width) const {
  const int64_t n = height * width, r = options.window() / 2, g = regions(height, width).count();
  return concat_patterns({offset_pattern(height, width, window_offsets(r, r)),
                          same_keys(n, at::arange(n, n + g, at::kLong))});
}

Pattern EtcImpl::global_pattern(int64_t height, int64_t width) const {
  const Regions cut = regions(height, width);
  const int64_t n = height * width, g = cut.count();
  int64_t widest = 0;
  for (const auto& pixels : cut.pixels) widest = std::max<int64_t>(widest, static_cast<int64_t>(pixels.size()));
  at::Tensor rows = at::full({g, widest + g}, -1, at::kLong);
  for (int64_t i = 0; i < g; ++i) {
    rows[i].narrow(0, 0, static_cast<int64_t>(cut.pixels[i].size())).copy_(at::tensor(cut.pixels[i], at::kLong));
    rows[i].narrow(0, widest, g).copy_(at::arange(n, n + g, at::kLong));
  }
  return pattern_from_rows(rows);
}

std::vector<std::vector<int64_t>> EtcImpl::extra_key_sources(int64_t height, int64_t width) const {
  const std::vector<int64_t> all = every_pixel(height, width);
  return std::vector<std::vector<int64_t>>(regions(height, width).count(), all);
}

at::Tensor EtcImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const TokenGrid& grid) {
  const Regions cut = regions(grid.height, grid.width);
  const at::Tensor gq = functional::region_means(q, cut), gk = functional::region_means(k, cut),
                   gv = functional::region_means(v, cut);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const Pattern globals = global_pattern(grid.height, grid.width).to(q.device());
  const at::Tensor updated =
      functional::patterned_attention(gq, at::cat({k, gk}, 2), at::cat({v, gv}, 2), globals, scale);
  return attend_pattern(q, k, v, grid.height, grid.width, gk, updated);
}

int64_t EtcImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  return PatternedBlockImpl::core_macs_on(b, height, width) +
         functional::patterned_macs(global_pattern(height, width), b, options.host().heads(),
                                    options.host().head_width());
}

}  // namespace attnseg
