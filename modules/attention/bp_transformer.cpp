#include "attention/bp_transformer.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace attnseg {

void BpTransformerOptions::check() const {
  host_.check("bp_transformer");
  TORCH_CHECK(radius_ >= 1, "bp_transformer: radius must be at least 1, got ", radius_);
}

BpTransformerImpl::BpTransformerImpl(const BpTransformerOptions& options_) : options(options_) { reset(); }

void BpTransformerImpl::reset() {
  options.check();
  reset_host(options.host());
}

int64_t BpTransformerImpl::levels(int64_t height, int64_t width) const {
  const int64_t side = std::max(height, width);
  int64_t level = 0;
  while ((side + (int64_t{1} << level) - 1) >> level > options.radius() + 1) ++level;
  return level;
}

Pattern BpTransformerImpl::build_pattern(int64_t height, int64_t width) const {
  const int64_t r = options.radius(), n = height * width, top = levels(height, width);
  std::vector<Pattern> parts{offset_pattern(height, width, window_offsets(r, r))};
  const at::Tensor pixel = at::arange(n, at::kLong).unsqueeze(1);
  const at::Tensor y = pixel.div(width, "floor"), x = pixel.remainder(width);
  // Offsets from a node to the children of its parent's near nodes, per axis, for a node whose
  // coordinate is even (s = 0) or odd (s = 1): [−2r−s, 2r+1−s].
  const at::Tensor span = at::arange(-2 * r, 2 * r + 2, at::kLong);  // 4r+2 values
  const int64_t per_axis = span.size(0);
  int64_t base = n;  // where level ℓ's nodes start in the key sequence (level 0: the pixels)
  for (int64_t level = 0; level < top; ++level) {
    const int64_t rows = (height + (int64_t{1} << level) - 1) >> level, cols = (width + (int64_t{1} << level) - 1) >> level;
    const at::Tensor cy = y.div(int64_t{1} << level, "floor"), cx = x.div(int64_t{1} << level, "floor");
    const at::Tensor oy = (span.unsqueeze(0) - cy.remainder(2)).unsqueeze(2);  // [N, 4r+2, 1]
    const at::Tensor ox = (span.unsqueeze(0) - cx.remainder(2)).unsqueeze(1);  // [N, 1, 4r+2]
    const at::Tensor ny = cy.unsqueeze(2) + oy, nx = cx.unsqueeze(2) + ox;      // [N, 4r+2, 4r+2] by broadcast
    const at::Tensor far = (oy.abs() > r) | (ox.abs() > r);
    const at::Tensor on_map = (ny >= 0) & (ny < rows) & (nx >= 0) & (nx < cols);
    const at::Tensor node = ny.clamp(0, rows - 1) * cols + nx.clamp(0, cols - 1) + (level == 0 ? 0 : base);
    parts.push_back(Pattern{node.reshape({1, n, per_axis * per_axis}).contiguous(),
                            (far & on_map).reshape({1, n, per_axis * per_axis}).contiguous()});
    if (level > 0) base += rows * cols;
  }
  return concat_patterns(parts);
}

std::vector<std::vector<int64_t>> BpTransformerImpl::extra_key_sources(int64_t height, int64_t width) const {
  std::vector<std::vector<int64_t>> sources;
  for (int64_t level = 1; level < levels(height, width); ++level) {
    const auto cells = cell_pixels(height, width, int64_t{1} << level);
    sources.insert(sources.end(), cells.begin(), cells.end());
  }
  return sources;
}

at::Tensor BpTransformerImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                            const TokenGrid& grid) {
  std::vector<at::Tensor> node_k, node_v;
  for (int64_t level = 1; level < levels(grid.height, grid.width); ++level) {
    node_k.push_back(functional::pool_cells(k, grid.height, grid.width, int64_t{1} << level));
    node_v.push_back(functional::pool_cells(v, grid.height, grid.width, int64_t{1} << level));
  }
  if (node_k.empty()) return attend_pattern(q, k, v, grid.height, grid.width);
  return attend_pattern(q, k, v, grid.height, grid.width, at::cat(node_k, 2), at::cat(node_v, 2));
}

}  // namespace attnseg
