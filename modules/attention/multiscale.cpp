#include "attention/multiscale.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace attnseg {

void MultiscaleOptions::check() const {
  host_.check("multiscale");
  TORCH_CHECK(levels_ >= 1 && levels_ <= 16, "multiscale: levels must be between 1 and 16, got ", levels_);
  TORCH_CHECK(radius_ >= 1, "multiscale: radius must be at least 1, got ", radius_);
}

MultiscaleImpl::MultiscaleImpl(const MultiscaleOptions& options_) : options(options_) { reset(); }

void MultiscaleImpl::reset() {
  options.check();
  reset_host(options.host());
}

Pattern MultiscaleImpl::build_pattern(int64_t height, int64_t width) const {
  const int64_t r = options.radius(), n = height * width;
  const Offsets offsets = window_offsets(r, r);
  std::vector<Pattern> parts{offset_pattern(height, width, offsets)};
  const at::Tensor pixel = at::arange(n, at::kLong);
  const at::Tensor y = pixel.div(width, "floor"), x = pixel.remainder(width);
  int64_t base = n;
  for (int64_t level = 1; level <= options.levels(); ++level) {
    const int64_t side = int64_t{1} << level, rows = (height + side - 1) / side, cols = (width + side - 1) / side;
    // The window of cells around the token's cell, as offset_pattern builds it on the map of cells.
    const Pattern cells = offset_pattern(rows, cols, offsets);
    const at::Tensor own = y.div(side, "floor") * cols + x.div(side, "floor");
    parts.push_back(Pattern{cells.index.index_select(1, own) + base, cells.valid.index_select(1, own)});
    base += rows * cols;
  }
  return concat_patterns(parts);
}

std::vector<std::vector<int64_t>> MultiscaleImpl::extra_key_sources(int64_t height, int64_t width) const {
  std::vector<std::vector<int64_t>> sources;
  for (int64_t level = 1; level <= options.levels(); ++level) {
    const auto cells = cell_pixels(height, width, int64_t{1} << level);
    sources.insert(sources.end(), cells.begin(), cells.end());
  }
  return sources;
}

at::Tensor MultiscaleImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const TokenGrid& grid) {
  std::vector<at::Tensor> cell_k, cell_v;
  for (int64_t level = 1; level <= options.levels(); ++level) {
    cell_k.push_back(functional::pool_cells(k, grid.height, grid.width, int64_t{1} << level));
    cell_v.push_back(functional::pool_cells(v, grid.height, grid.width, int64_t{1} << level));
  }
  return attend_pattern(q, k, v, grid.height, grid.width, at::cat(cell_k, 2), at::cat(cell_v, 2));
}

}  // namespace attnseg
