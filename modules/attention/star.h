// Star-Transformer (Guo et al., arXiv:1902.09113), as fastNLP's StarTransformer, on the map:
// the tokens are satellites and one relay node is linked to all of them. A satellite attends to
// its neighbours (the ring's i−1, i, i+1 become the (2·radius+1)² pixels around it, itself
// included, which also stands for the reference's own-embedding term) and to the relay; the
// relay attends to itself and to every satellite. The relay starts as the mean of the tokens
// (the reference's initialisation). The reference alternates the two updates over several
// cycles, satellites first; one block is one cycle, and here the relay is updated first so that
// the satellites read an attended relay rather than the plain mean (with the satellites first,
// the relay's update would reach nothing).
//
// Cost: N·((2·radius+1)² + 1) + (N + 1): linear in N.
#pragma once

#include "attention/pattern.h"

namespace attnseg {

namespace functional {
// The satellites' half: query i reads the pixels of its (2r+1)² neighbourhood and the relay
// (relay_k, relay_v: [B, h, 1, d]). q, k, v: [B, h, H·W, d] in raster order.
at::Tensor star_satellites(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& relay_k,
                           const at::Tensor& relay_v, int64_t height, int64_t width, int64_t radius);
}  // namespace functional

struct StarOptions {
  explicit StarOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, radius) = 1;  // neighbours within this many pixels (1: the 3×3 ring)

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("radius", radius_);
  }
  void check() const;
};

class StarImpl : public PatternedBlockImpl {
 public:
  explicit StarImpl(const StarOptions& options);
  void reset();

  // The satellites' pattern: neighbours, then the relay (key N).
  Pattern build_pattern(int64_t height, int64_t width) const override;
  std::vector<std::vector<int64_t>> extra_key_sources(int64_t height, int64_t width) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;
  int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const override;

  StarOptions options;
};
TORCH_MODULE(Star);

}  // namespace attnseg
