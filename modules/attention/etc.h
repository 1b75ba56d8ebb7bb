// ETC: Encoding Long and Structured Inputs in Transformers (Ainslie et al., arXiv:2004.08483),
// global-local attention on the map: the map is cut into global_grid[0]×global_grid[1] regions
// (ETC's segments, here squares of pixels), each with one global token whose query, key and value
// are the means of its region's (ETC feeds one global token per segment). Its four pieces:
// global-to-global (every global token reads every global token), global-to-local (a global
// token reads the pixels of its own region, ETC's hierarchical mask for long inputs),
// local-to-global (every pixel reads every global token) and local-to-local (every pixel reads
// the window×window pixels around it). In ETC the pieces run side by side and the global
// tokens' update reaches the pixels in the next layer; one block has no next layer, so here the
// global tokens are updated first (g2g ∪ g2l, one softmax) and the pixels then read the updated
// global tokens (l2l ∪ l2g, one softmax).
//
// Cost: N·(window² + g) + g·(g + N/g), never N×N: g stays fixed as the map grows.
#pragma once

#include "attention/pattern.h"

namespace attnseg {

struct EtcOptions {
  explicit EtcOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, window) = 7;                                             // local-to-local, odd
  TORCH_ARG(std::vector<int64_t>, global_grid) = std::vector<int64_t>{2, 4};  // regions, one global token each

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("window", window_);
    field("global_grid", global_grid_);
  }
  void check() const;
};

class EtcImpl : public PatternedBlockImpl {
 public:
  explicit EtcImpl(const EtcOptions& options);
  void reset();

  Regions regions(int64_t height, int64_t width) const;
  // The pixels' pattern: l2l (the window) and l2g (the global tokens, keys N…N+g−1).
  Pattern build_pattern(int64_t height, int64_t width) const override;
  // The global tokens' pattern over the same keys: g2l (their region's pixels) and g2g.
  Pattern global_pattern(int64_t height, int64_t width) const;
  // A global token reads every global token, so through them every pixel.
  std::vector<std::vector<int64_t>> extra_key_sources(int64_t height, int64_t width) const override;
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;
  int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const override;

  EtcOptions options;
};
TORCH_MODULE(Etc);

}  // namespace attnseg
