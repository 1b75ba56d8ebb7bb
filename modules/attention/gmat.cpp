#include "attention/gmat.h"

#include <ATen/ATen.h>

#include <cmath>

namespace attnseg {

void GmatOptions::check() const {
  host_.check("gmat");
  TORCH_CHECK(memory_ >= 1, "gmat: memory must be at least 1, got ", memory_);
  TORCH_CHECK(window_ >= 1 && window_ % 2 == 1, "gmat: window must be odd and positive, got ", window_);
}

GmatImpl::GmatImpl(const GmatOptions& options_) : options(options_) { reset(); }

void GmatImpl::reset() {
  options.check();
  reset_host(options.host());
  const int64_t h = options.host().heads(), m = options.memory(), d = options.host().head_width();
  // As a token's projections are: unit-variance embeddings through nn.Linear's initialisation
  // give entries of variance about 1/3.
  memory_q = register_parameter("memory_q", at::randn({h, m, d}) / std::sqrt(3.0));
  memory_k = register_parameter("memory_k", at::randn({h, m, d}) / std::sqrt(3.0));
  memory_v = register_parameter("memory_v", at::randn({h, m, d}) / std::sqrt(3.0));
}

Pattern GmatImpl::build_pattern(int64_t height, int64_t width) const {
  const int64_t n = height * width, r = options.window() / 2;
  return concat_patterns({offset_pattern(height, width, window_offsets(r, r)),
                          same_keys(n, at::arange(n, n + options.memory(), at::kLong))});
}

std::vector<std::vector<int64_t>> GmatImpl::extra_key_sources(int64_t height, int64_t width) const {
  const std::vector<int64_t> all = every_pixel(height, width);
  return std::vector<std::vector<int64_t>>(options.memory(), all);
}

at::Tensor GmatImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const TokenGrid& grid) {
  const int64_t b = q.size(0);
  auto batch = [&](const at::Tensor& t, const at::Tensor& like) {
    return t.to(like.scalar_type()).unsqueeze(0).expand({b, t.size(0), t.size(1), t.size(2)});
  };
  const at::Tensor mq = batch(memory_q, q), mk = batch(memory_k, k), mv = batch(memory_v, v);
  // The write: every slot reads every slot and every token.
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const at::Tensor weights = at::softmax(at::matmul(mq * scale, at::cat({mk, k}, 2).transpose(-1, -2)), -1);
  // [B, h, M, d]
  const at::Tensor written = at::matmul(weights.to(v.scalar_type()), at::cat({mv, v}, 2));
  if (keep_written_) written_ = written.detach();
  // The read: the window and the written slots.
  return attend_pattern(q, k, v, grid.height, grid.width, mk, written);
}

int64_t GmatImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  const int64_t m = options.memory(), n = height * width;
  return PatternedBlockImpl::core_macs_on(b, height, width) +
         2 * b * options.host().heads() * m * (m + n) * options.host().head_width();
}

}  // namespace attnseg
