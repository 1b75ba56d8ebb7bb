// Hard-Coded Gaussian Attention for Neural Machine Translation (You, Sun and Iyyer,
// arXiv:2006.05174), on the map: every head mixes the values with fixed weights, a Gaussian of
// standard deviation `sigma` pixels centred next to the token (head i: left, right, above,
// below, for i mod 4; the paper centres its heads on the previous and the next word), cut to
// the (2·radius+1)² window and renormalised over the pixels on the map. No query, no key, no
// score: the block builds no query or key projection; only the values and the output
// projection are learned.
//
// Cost: N·(2·radius+1)² per head: linear in N.
#pragma once

#include "attention/pattern.h"

namespace attnseg {

struct HandcraftedOptions {
  explicit HandcraftedOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(double, sigma) = 1.0;  // the paper's standard deviation
  TORCH_ARG(int64_t, radius) = 3;  // the window the Gaussian is cut to

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("sigma", sigma_);
    field("radius", radius_);
  }
  void check() const;
};

class HandcraftedImpl : public PatternedBlockImpl {
 public:
  explicit HandcraftedImpl(const HandcraftedOptions& options);
  void reset();

  TokenInputs inputs() const override { return {false, false, true}; }
  // The centre of head i's Gaussian, as an offset (dy, dx) from the token.
  static std::pair<int64_t, int64_t> centre_of_head(int64_t head);
  Pattern build_pattern(int64_t height, int64_t width) const override;
  // The fixed weights [heads, N, P] on the pattern's slots (0 off the map).
  at::Tensor weights(int64_t height, int64_t width) const;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;
  int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const override;

  HandcraftedOptions options;

 private:
  int64_t cached_height_ = -1, cached_width_ = -1;
  at::Tensor cached_weights_;
};
TORCH_MODULE(Handcrafted);

}  // namespace attnseg
