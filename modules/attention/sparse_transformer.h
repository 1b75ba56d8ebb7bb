// Generating Long Sequences with Sparse Transformers (Child et al., arXiv:1904.10509), its two
// factorised patterns as ptillet/torch-blocksparse and openai/sparse_attention build them, over
// the map's tokens in raster order, without the causal mask (a feature map has no direction).
// With stride l (by default the map's width, so that one stride is one row):
//   strided: A1 = {j : |i − j| < l} (the previous and next l − 1 tokens), A2 = {j : (i − j) mod
//            l = 0} (every l-th token: on the map, the column);
//   fixed:   A1 = {j : ⌊j/l⌋ = ⌊i/l⌋} (the same block of l), A2 = {j : j mod l ≥ l − c} (the
//            last c tokens of every block, the summaries; a last block cut short by the map
//            has its own last c tokens as summaries, so that two steps still reach it).
// The paper's multi-head integration: the first half of the heads (rounded up) attend with A1,
// the rest with A2, so heads must be at least 2. In two steps (A1 then A2, or A2 then A1 for
// fixed) every token reaches every token.
//
// Cost: N·(2l + N/l) (strided) or N·(l + c·N/l) (fixed) per head: O(N√N) at l ≈ √N.
#pragma once

#include <string>

#include "attention/pattern.h"

namespace attnseg {

struct SparseTransformerOptions {
  explicit SparseTransformerOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(std::string, pattern) = "strided";  // strided or fixed
  TORCH_ARG(int64_t, stride) = 0;               // l; 0: the map's width
  TORCH_ARG(int64_t, summary) = 1;              // c, fixed pattern

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("pattern", pattern_);
    field("stride", stride_);
    field("summary", summary_);
  }
  void check() const;
};

class SparseTransformerImpl : public PatternedBlockImpl {
 public:
  explicit SparseTransformerImpl(const SparseTransformerOptions& options);
  void reset();

  int64_t stride_for(int64_t width) const { return options.stride() > 0 ? options.stride() : width; }
  // A1 (first = true) or A2 on n tokens with stride l.
  Pattern half(int64_t n, int64_t l, bool first) const;
  Pattern build_pattern(int64_t height, int64_t width) const override;
  // Runs of 16 consecutive tokens, and for the strided A2 runs of 16 tokens of one residue mod l
  // (on the map with l = W, a piece of a column): each run shares most or all of its keys.
  at::Tensor tile_of(int64_t height, int64_t width, int64_t group) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;

  SparseTransformerOptions options;
};
TORCH_MODULE(SparseTransformer);

}  // namespace attnseg
