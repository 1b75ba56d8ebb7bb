#include "attention/sparse_transformer.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace attnseg {

void SparseTransformerOptions::check() const {
  host_.check("sparse_transformer");
  TORCH_CHECK(pattern_ == "strided" || pattern_ == "fixed",
              "sparse_transformer: pattern must be strided or fixed, got '", pattern_, "'");
  TORCH_CHECK(stride_ >= 0, "sparse_transformer: stride must be 0 (the map's width) or positive, got ", stride_);
  TORCH_CHECK(summary_ >= 1, "sparse_transformer: summary must be at least 1, got ", summary_);
  TORCH_CHECK(host_.heads() >= 2, "sparse_transformer: heads must be at least 2 (one per half of the pattern), got ",
              host_.heads());
}

SparseTransformerImpl::SparseTransformerImpl(const SparseTransformerOptions& options_) : options(options_) {
  reset();
}

void SparseTransformerImpl::reset() {
  options.check();
  reset_host(options.host());
}

Pattern SparseTransformerImpl::half(int64_t n, int64_t l, bool first) const {
  const at::Tensor i = at::arange(n, at::kLong).unsqueeze(1);  // [N, 1]
  const int64_t blocks = (n + l - 1) / l;
  at::Tensor rows;
  if (options.pattern() == "strided") {
    rows = first ? i + at::arange(-(l - 1), l, at::kLong)             // |i − j| < l
                 : i.remainder(l) + l * at::arange(blocks, at::kLong);  // j ≡ i (mod l)
  } else {
    if (first) {
      rows = i.div(l, "floor") * l + at::arange(l, at::kLong);  // the same block
    } else {
      // Every block's last c tokens; the last block may be cut short by the map, and its
      // summaries are then its own last tokens.
      std::vector<int64_t> summaries;
      for (int64_t block = 0; block < blocks; ++block) {
        const int64_t end = std::min((block + 1) * l, n), c = std::min(options.summary(), end - block * l);
        for (int64_t j = end - c; j < end; ++j) summaries.push_back(j);
      }
      rows = at::tensor(summaries, at::kLong).unsqueeze(0).expand({n, static_cast<int64_t>(summaries.size())});
    }
  }
  return pattern_from_rows(at::where((rows >= 0) & (rows < n), rows, at::full_like(rows, -1)));
}

Pattern SparseTransformerImpl::build_pattern(int64_t height, int64_t width) const {
  const int64_t n = height * width, l = std::min(stride_for(width), n), heads = options.host().heads();
  const Pattern a1 = half(n, l, true), a2 = half(n, l, false);
  std::vector<Pattern> per_head;
  for (int64_t head = 0; head < heads; ++head) per_head.push_back(head < (heads + 1) / 2 ? a1 : a2);
  return stack_groups(per_head);
}

at::Tensor SparseTransformerImpl::tile_of(int64_t height, int64_t width, int64_t group) const {
  const int64_t n = height * width, l = std::min(stride_for(width), n);
  const at::Tensor i = at::arange(n, at::kLong);
  const bool first = group < (options.host().heads() + 1) / 2;
  if (first || options.pattern() == "fixed") return i.div(16, "floor");
  return i.remainder(l) + l * i.div(l, "floor").div(16, "floor");  // (run, residue)
}

at::Tensor SparseTransformerImpl::attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const TokenGrid& grid) {
  return attend_pattern(q, k, v, grid.height, grid.width);
}

}  // namespace attnseg
