#include "attention/axial.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/torch_compat.h"

namespace attnseg {

namespace functional {
at::Tensor multihead_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                               std::optional<double> scale) {
  const int64_t s = q.size(0), t = q.size(1), d = q.size(2), e = d / heads;
  TORCH_CHECK(d % heads == 0, "multi-head attention: width ", d, " does not split into ", heads, " heads");
  auto split = [&](const at::Tensor& x) { return x.reshape({s, t, heads, e}).transpose(1, 2); };  // [S, heads, T, e]
  const double factor = scale.value_or(1.0 / std::sqrt(static_cast<double>(e)));
  return compat::dense_attention(split(q), split(k), split(v), factor).transpose(1, 2).reshape({s, t, d});
}
}  // namespace functional

void AxialOptions::check() const {
  TORCH_CHECK(channels() > 0, "axial: channels must be positive, got ", channels());
  TORCH_CHECK(heads() >= 1 && channels() % heads() == 0, "axial: channels ", channels(),
              " must be divisible by heads=", heads());
  const auto& size = embedding_size();
  TORCH_CHECK(size.size() == 2 && size[0] > 0 && size[1] > 0, "axial: embedding_size must be [height, width] > 0");
  TORCH_CHECK(std::isfinite(embedding_std()) && embedding_std() >= 0,
              "axial: embedding_std must be finite and not negative, got ", embedding_std());
}

AxialImpl::AxialImpl(const AxialOptions& options_) : options(options_) { reset(); }

void AxialImpl::reset() {
  options.check();
  const int64_t c = options.channels();
  const auto& size = options.embedding_size();
  // The reference initialises the embeddings with randn (embedding_std 1).
  const double std = options.embedding_std();
  height_embedding = register_parameter("height_embedding", torch::randn({1, c, size[0], 1}) * std);
  width_embedding = register_parameter("width_embedding", torch::randn({1, c, 1, size[1]}) * std);
  for (int i = 0; i < 2; ++i) {
    const std::string axis = i == 0 ? "height" : "width";
    to_q_[i] = register_module(axis + "_q", torch::nn::Linear(torch::nn::LinearOptions(c, c).bias(false)));
    to_kv_[i] = register_module(axis + "_kv", torch::nn::Linear(torch::nn::LinearOptions(c, 2 * c).bias(false)));
    to_out_[i] = register_module(axis + "_out", torch::nn::Linear(c, c));
  }
}

torch::Tensor AxialImpl::positions(int64_t h, int64_t w) const {
  auto resize = [](const at::Tensor& e, int64_t rows, int64_t cols) {
    if (e.size(2) == rows && e.size(3) == cols) return e;
    return at::upsample_bilinear2d(e, {rows, cols}, /*align_corners=*/false);
  };
  return resize(height_embedding, h, 1) + resize(width_embedding, 1, w);
}

torch::Tensor AxialImpl::axis_pass(const torch::Tensor& x, int64_t axis) {
  TORCH_CHECK(axis == 2 || axis == 3, "axial: axis must be 2 (height) or 3 (width)");
  const int i = axis == 2 ? 0 : 1;
  const int64_t c = options.channels();
  // Sequences along `axis`, channels last: [B, other, axis, C], made contiguous once so that
  // the projection is one plain matrix product.
  const at::Tensor seq = (axis == 2 ? x.permute({0, 3, 2, 1}) : x.permute({0, 2, 3, 1})).contiguous();
  const auto shape = seq.sizes().vec();
  // q, k and v in one product, the 1/√e of the scores folded into the query weights (a C×C
  // scaling instead of an N×C one).
  const double scale = 1.0 / std::sqrt(static_cast<double>(c / options.heads()));
  const at::Tensor qkv = at::linear(seq.view({-1, shape[2], c}), at::cat({to_q_[i]->weight * scale, to_kv_[i]->weight}));
  const auto parts = qkv.chunk(3, -1);
  const at::Tensor attended = functional::multihead_attention(parts[0], parts[1], parts[2], options.heads(), /*scale=*/1.0);
  const at::Tensor out = at::linear(attended, to_out_[i]->weight, to_out_[i]->bias).view(shape);
  return axis == 2 ? out.permute({0, 3, 2, 1}) : out.permute({0, 3, 1, 2});
}

torch::Tensor AxialImpl::forward(const torch::Tensor& x) {
  at::Tensor y = x + positions(x.size(2), x.size(3));
  y = y + axis_pass(y, 2);
  return y + axis_pass(y, 3);
}

int64_t AxialImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], h = shape[2], w = shape[3], n = h * w;
  // Per pass: q, k, v and output projections (4·N·C²); scores and weighted sum along the axis.
  return b * (2 * 4 * n * c * c + 2 * n * c * (h + w));
}

}  // namespace attnseg
