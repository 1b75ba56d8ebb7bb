#include "attention/longformer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace attnseg {

void LongformerOptions::check() const {
  host_.check("longformer");
  TORCH_CHECK(window_ >= 1 && window_ % 2 == 1, "longformer: window must be odd and positive, got ", window_);
  TORCH_CHECK(global_grid_.size() == 2 && global_grid_[0] >= 0 && global_grid_[1] >= 0 &&
                  (global_grid_[0] == 0) == (global_grid_[1] == 0),
              "longformer: global_grid must be [rows, columns], both positive or both 0 (no global tokens)");
}

LongformerImpl::LongformerImpl(const LongformerOptions& options_) : options(options_) { reset(); }

void LongformerImpl::reset() {
  options.check();
  reset_host(options.host());
  if (options.global_grid()[0] == 0) return;
  const int64_t c = options.host().channels(), inner = options.host().inner();
  query_global = register_module("query_global", torch::nn::Linear(c, inner));
  key_global = register_module("key_global", torch::nn::Linear(c, inner));
  value_global = register_module("value_global", torch::nn::Linear(c, inner));
}

std::vector<int64_t> LongformerImpl::global_pixels(int64_t height, int64_t width) const {
  if (options.global_grid()[0] == 0) return {};
  std::vector<int64_t> pixels =
      map_regions(height, width, options.global_grid()[0], options.global_grid()[1]).centre;
  std::sort(pixels.begin(), pixels.end());
  return pixels;
}

Pattern LongformerImpl::build_pattern(int64_t height, int64_t width) const {
  const int64_t r = options.window() / 2;
  Pattern window = offset_pattern(height, width, window_offsets(r, r));
  const std::vector<int64_t> globals = global_pixels(height, width);
  if (globals.empty()) return window;
  return concat_patterns({window, same_keys(height * width, at::tensor(globals, at::kLong))});
}

std::vector<int64_t> LongformerImpl::declared_support(int64_t height, int64_t width, int64_t query) const {
  const std::vector<int64_t> globals = global_pixels(height, width);
  if (std::find(globals.begin(), globals.end(), query) == globals.end()) {
    return PatternedBlockImpl::declared_support(height, width, query);
  }
  return every_pixel(height, width);
}

at::Tensor LongformerImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                         const TokenGrid& grid) {
  at::Tensor out = attend_pattern(q, k, v, grid.height, grid.width);
  const std::vector<int64_t> globals = global_pixels(grid.height, grid.width);
  if (globals.empty()) return out;
  // The global rows: every token, through the global projections; they replace the window's
  // rows at the global pixels.
  const int64_t b = q.size(0), heads = q.size(1), d = q.size(3);
  const at::Tensor at_globals = at::tensor(globals, at::TensorOptions(at::kLong).device(q.device()));
  auto split = [&](const at::Tensor& t) { return t.view({b, t.size(1), heads, d}).transpose(1, 2); };
  const at::Tensor gq = split(query_global(grid.qk_input.index_select(1, at_globals))).to(q.scalar_type());
  const at::Tensor gk = split(key_global(grid.qk_input)).to(k.scalar_type());
  const at::Tensor gv = split(value_global(grid.value_input)).to(v.scalar_type());
  const at::Tensor weights = at::softmax(at::matmul(gq * (1.0 / std::sqrt(static_cast<double>(d))), gk.transpose(-1, -2)), -1);
  const at::Tensor rows = at::matmul(weights.to(gv.scalar_type()), gv);  // [B, h, g, d]
  return out.index_copy(2, at_globals, rows.to(out.scalar_type()));
}

int64_t LongformerImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  const int64_t n = height * width, g = static_cast<int64_t>(global_pixels(height, width).size());
  const int64_t c = options.host().channels(), inner = options.host().inner(), heads = options.host().heads(),
                d = options.host().head_width();
  const int64_t global_rows = g == 0 ? 0 : b * (g + 2 * n) * c * inner + 2 * b * heads * g * n * d;
  return PatternedBlockImpl::core_macs_on(b, height, width) + global_rows;
}

}  // namespace attnseg
