// Multi-scale Transformer Language Models (Subramanian et al., arXiv:2005.00581), its
// UNet-like view of attention in one block, on the map: a token attends to the pixels of the
// (2·radius+1)² window around it (fine, local) and, at each of `levels` coarser scales, to the
// (2·radius+1)² pooled cells around its own cell at that scale (level ℓ: the mean keys and
// values of 2^ℓ×2^ℓ squares): the farther a key, the coarser the scale it is read at. The
// windows of the scales overlap (a coarse cell around the token holds pixels its fine window
// also reads), as the pooled and the full-resolution streams of the model do.
//
// Cost: N·(levels+1)·(2·radius+1)² scores: linear in N.
#pragma once

#include "attention/pattern.h"

namespace attnseg {

struct MultiscaleOptions {
  explicit MultiscaleOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, levels) = 2;  // coarse scales: cells of 2, 4, … pixels a side
  TORCH_ARG(int64_t, radius) = 2;  // the window at every scale is (2·radius+1)²

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("levels", levels_);
    field("radius", radius_);
  }
  void check() const;
};

class MultiscaleImpl : public PatternedBlockImpl {
 public:
  explicit MultiscaleImpl(const MultiscaleOptions& options);
  void reset();

  Pattern build_pattern(int64_t height, int64_t width) const override;
  std::vector<std::vector<int64_t>> extra_key_sources(int64_t height, int64_t width) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;

  MultiscaleOptions options;
};
TORCH_MODULE(Multiscale);

}  // namespace attnseg
