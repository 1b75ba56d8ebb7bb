// Transformer on a Diet (Wang et al., arXiv:2002.06170), its dilated pattern, as
// cgraywang/transformer-on-diet, on the map: a token attends to the (2·radius+1)² pixels at
// offsets that are multiples of a dilation, and the dilation grows like WaveNet's, here from
// head to head (head i: dilations[i]; by default 1, 2, 4, … doubling): the heads together see a
// neighbourhood whose reach grows exponentially with the head count at a constant cost per head.
//
// Cost: N·(2·radius+1)² per head: linear in N.
#pragma once

#include "attention/pattern.h"

namespace attnseg {

struct DietOptions {
  explicit DietOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, radius) = 1;
  TORCH_ARG(std::vector<int64_t>, dilations) = std::vector<int64_t>{};  // one per head; empty: 1, 2, 4, …

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("radius", radius_);
    field("dilations", dilations_);
  }
  void check() const;
  // The dilation of each head.
  std::vector<int64_t> head_dilations() const;
};

class DietImpl : public PatternedBlockImpl {
 public:
  explicit DietImpl(const DietOptions& options);
  void reset();

  Pattern build_pattern(int64_t height, int64_t width) const override;
  // 4×4 pixels spaced by the head's dilation: they share the dilated window's keys as neighbours
  // share an undilated one's.
  at::Tensor tile_of(int64_t height, int64_t width, int64_t group) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;

  DietOptions options;
};
TORCH_MODULE(Diet);

}  // namespace attnseg
