#include "attention/sequence.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "core/device.h"

namespace attnseg {

void TokenHostOptions::check(const std::string& block) const {
  TORCH_CHECK(channels() > 0, block, ": channels must be positive, got ", channels());
  TORCH_CHECK(heads() >= 1, block, ": heads must be at least 1, got ", heads());
  TORCH_CHECK(dim_head() >= 0, block, ": dim_head must be positive (or 0: channels / heads), got ", dim_head());
  TORCH_CHECK(dim_head() > 0 || channels() % heads() == 0, block, ": heads=", heads(), " do not divide channels (",
              channels(), "); set dim_head");
  TORCH_CHECK(positional() == "sinusoidal" || positional() == "learned" || positional() == "none", block,
              ": positional must be sinusoidal, learned or none, got '", positional(), "'");
  TORCH_CHECK(map_size().size() == 2 && map_size()[0] > 0 && map_size()[1] > 0, block,
              ": map_size must be [height, width] with positive sizes");
  TORCH_CHECK(order() == "raster" || order() == "tiles", block, ": order must be raster or tiles, got '", order(),
              "'");
  TORCH_CHECK(tile() >= 1, block, ": tile must be at least 1, got ", tile());
}

at::Tensor token_permutation(int64_t height, int64_t width, TokenOrder order, int64_t tile) {
  if (order == TokenOrder::raster) return at::arange(height * width, at::kLong);
  std::vector<int64_t> pixels;
  pixels.reserve(height * width);
  for (int64_t ty = 0; ty < height; ty += tile) {
    for (int64_t tx = 0; tx < width; tx += tile) {
      for (int64_t y = ty; y < std::min(ty + tile, height); ++y) {
        for (int64_t x = tx; x < std::min(tx + tile, width); ++x) pixels.push_back(y * width + x);
      }
    }
  }
  return at::tensor(pixels, at::kLong);
}

TokenGrid padded_grid(TokenGrid grid, int64_t padding, c10::Device device) {
  grid.padding = padding;
  grid.key_valid = at::Tensor();
  if (padding > 0) {
    grid.key_valid = at::arange(grid.length() + padding, at::TensorOptions(at::kLong).device(device)) < grid.length();
  }
  return grid;
}

at::Tensor resample_to_grid(const at::Tensor& maps, const TokenGrid& grid) {
  at::Tensor out = maps;
  if (maps.size(1) != grid.height || maps.size(2) != grid.width) {
    out = at::upsample_bilinear2d(maps.unsqueeze(0), {grid.height, grid.width}, /*align_corners=*/false).squeeze(0);
  }
  out = out.flatten(1);
  return grid.order == TokenOrder::raster ? out : out.index_select(1, grid.pixel_of);
}

namespace functional {
at::Tensor sinusoidal_position_2d(int64_t channels, int64_t height, int64_t width) {
  // One 1-D encoding of `size` positions on `m` channels: [m, size].
  auto axis = [](int64_t m, int64_t size) {
    const at::Tensor pos = at::arange(size, at::kDouble).unsqueeze(0);                  // [1, size]
    const at::Tensor pair = at::floor_divide(at::arange(m, at::kDouble), 2).unsqueeze(1);  // [m, 1]
    const at::Tensor angle = pos * at::pow(10000.0, -2.0 * pair / static_cast<double>(m));
    const at::Tensor even = (at::arange(m, at::kLong).remainder(2) == 0).unsqueeze(1);
    return at::where(even, angle.sin(), angle.cos());
  };
  const int64_t cy = channels / 2, cx = channels - cy;
  const at::Tensor ey = axis(cy, height).unsqueeze(2).expand({cy, height, width});
  const at::Tensor ex = axis(cx, width).unsqueeze(1).expand({cx, height, width});
  return at::cat({ey, ex}, 0).to(at::kFloat);
}
}  // namespace functional

void TokenHostImpl::reset_host(const TokenHostOptions& host) {
  host_ = host;
  const int64_t c = host_.channels(), inner = host_.inner();
  const TokenInputs reads = inputs();
  to_q_ = to_k_ = to_v_ = torch::nn::Linear{nullptr};
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})));
  if (reads.queries) to_q_ = register_module("to_q", torch::nn::Linear(c, inner));
  if (reads.keys) to_k_ = register_module("to_k", torch::nn::Linear(c, inner));
  if (reads.values) to_v_ = register_module("to_v", torch::nn::Linear(c, inner));
  to_out_ = register_module("to_out", torch::nn::Linear(inner, c));
  if (host_.positional() == "learned") {
    const auto& size = host_.map_size();
    // ViT's initialisation of its position table (truncated normal, std 0.02).
    learned_positions_ = register_parameter("positions", torch::randn({c, size[0], size[1]}) * 0.02);
  }
}

at::Tensor TokenHostImpl::positions(int64_t height, int64_t width, c10::Device device) {
  if (host_.positional() == "none") return {};
  if (host_.positional() == "sinusoidal") {
    // Fixed: built once per map size and device, not every forward.
    if (!sinusoidal_.defined() || sinusoidal_.size(1) != height || sinusoidal_.size(2) != width ||
        sinusoidal_.device() != device) {
      sinusoidal_ = functional::sinusoidal_position_2d(host_.channels(), height, width).to(device);
    }
    return sinusoidal_;
  }
  if (learned_positions_.size(1) == height && learned_positions_.size(2) == width) return learned_positions_;
  return at::upsample_bilinear2d(learned_positions_.unsqueeze(0), {height, width}, /*align_corners=*/false)
      .squeeze(0);
}

torch::Tensor TokenHostImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), n = h * w;
  const int64_t heads = host_.heads(), d = host_.head_width();
  TokenGrid grid{h, w, host_.token_order(), {}, 0, {}};
  const bool raster = grid.order == TokenOrder::raster;
  if (!raster) grid.pixel_of = token_permutation(h, w, grid.order, host_.tile()).to(x.device());

  at::Tensor tokens = x.flatten(2);  // [B, C, N], raster
  if (!raster) tokens = tokens.index_select(2, grid.pixel_of);
  // LayerNorm in its parameters' type: CPU autocast leaves it to the input's, and a bf16 input
  // with float weights is an error there.
  const at::Tensor normed = norm_(tokens.transpose(1, 2).to(norm_->weight.scalar_type()));  // [B, N, C]
  at::Tensor qk_in = normed;
  // As DETR adds them: to the queries' and keys' input, so values carry content only.
  if (at::Tensor pe = positions(h, w, x.device()); pe.defined()) {
    pe = pe.flatten(1);
    if (!raster) pe = pe.index_select(1, grid.pixel_of);
    qk_in = normed + pe.transpose(0, 1).to(normed.scalar_type());
  }
  const int64_t multiple = token_multiple(), padding = (multiple - n % multiple) % multiple;
  grid = padded_grid(std::move(grid), padding, x.device());
  grid.qk_input = qk_in;
  grid.value_input = normed;
  // [B, N, inner] → [B, heads, N + padding, d], the padded tokens zero.
  auto split = [&](const at::Tensor& t) {
    const at::Tensor heads_first = t.view({b, n, heads, d}).transpose(1, 2);
    return padding == 0 ? heads_first : at::constant_pad_nd(heads_first, {0, 0, 0, padding});
  };
  at::Tensor q, k, v;
  {
    // qk_in is already in the weights' type: without autocast the projections stay there.
    std::optional<AutocastDisabled> in_float;
    if (float_queries_keys()) in_float.emplace();
    if (to_q_) q = split(to_q_(qk_in));
    if (to_k_) k = split(to_k_(qk_in));
  }
  if (to_v_) v = split(to_v_(normed));
  at::Tensor attended = attend(q, k, v, grid);
  if (padding > 0) attended = attended.narrow(2, 0, n);
  at::Tensor y = to_out_(attended.transpose(1, 2).reshape({b, n, heads * d})).transpose(1, 2);  // [B, C, N]
  if (!raster) y = y.index_select(2, at::argsort(grid.pixel_of));
  return x + y.reshape({b, c, h, w});
}

int64_t TokenHostImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], n = shape[2] * shape[3];
  const int64_t projections = 1 + (to_q_ ? 1 : 0) + (to_k_ ? 1 : 0) + (to_v_ ? 1 : 0);
  return projections * b * n * c * host_.inner() + core_macs_on(b, shape[2], shape[3]);
}

int64_t TokenHostImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  const int64_t n = height * width, multiple = token_multiple();
  return core_macs(b, (n + multiple - 1) / multiple * multiple);
}

}  // namespace attnseg
