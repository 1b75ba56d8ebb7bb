// BP-Transformer: Modelling Long-Range Context via Binary Partitioning (Ye et al.,
// arXiv:1911.04070), as yzh119/BPT, in 2-D: the binary partition of the sequence becomes a
// quadtree of the map, whose level-ℓ nodes are the 2^ℓ×2^ℓ squares of pixels, each represented
// by the mean of its pixels' keys and values. A token attends to fine nodes near it and coarse
// nodes far from it: to the pixels within `radius` of it, and at every level ℓ to the level-ℓ
// nodes that are children of the level-(ℓ+1) nodes within `radius` of its own but are not
// themselves within `radius` of its own level-ℓ node (the fast multipole method's interaction
// lists). Those nodes tile the whole map, each pixel under exactly one of them, with
// (2r+1)² + 3·(2r+1)² per level nodes: the attended set grows with the number of levels,
// log₂ of the map's side.
//
// Cost: O(N log N) scores, never N×N.
#pragma once

#include "attention/pattern.h"

namespace attnseg {

struct BpTransformerOptions {
  explicit BpTransformerOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, radius) = 1;  // nodes within this many nodes are near at every level

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("radius", radius_);
  }
  void check() const;
};

class BpTransformerImpl : public PatternedBlockImpl {
 public:
  explicit BpTransformerImpl(const BpTransformerOptions& options);
  void reset();

  // The levels with interaction lists on an H×W map: 0 … levels−1; level `levels` is the first
  // whose nodes are all near every token.
  int64_t levels(int64_t height, int64_t width) const;
  Pattern build_pattern(int64_t height, int64_t width) const override;
  std::vector<std::vector<int64_t>> extra_key_sources(int64_t height, int64_t width) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;

  BpTransformerOptions options;
};
TORCH_MODULE(BpTransformer);

}  // namespace attnseg
