// Linformer: Self-Attention with Linear Complexity (Wang et al., arXiv:2006.04768), as
// tatp22/linformer-pytorch: learned projections E and F shrink the keys and values from N
// tokens to k, out = softmax(Q (EK)ᵀ / √d) (FV), O(N k d) for a fixed k. On a feature map the
// projections are 2-D: E, F are k maps of map_size (the trained map), resampled
// bilinearly to the map they meet and scaled by trained/current token counts so that each
// projected token stays a weighted sum of the same total weight; so k stays fixed as N grows
// and the block runs at resolutions it was not trained at. Shared by the heads (the paper's
// headwise sharing); separate for keys and values.
#pragma once

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// out = softmax(Q (E K)ᵀ / √d) (F V). q, k: [B, h, N, d]; v: [B, h, N, dv]; e, f: [k, N].
at::Tensor linformer_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& e,
                               const at::Tensor& f);
}  // namespace functional

struct LinformerOptions {
  explicit LinformerOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, k) = 64;  // projected length

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("k", k_);
  }
  void check() const;
};

class LinformerImpl : public TokenHostImpl {
 public:
  explicit LinformerImpl(const LinformerOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  // The projection `p` (e or f, [k, h0, w0]) for a map of height × width in the grid's token
  // order: [k, H·W].
  at::Tensor projection_for(const at::Tensor& p, const TokenGrid& grid) const;

  LinformerOptions options;
  at::Tensor e, f;  // [k, h0, w0] parameters
};
TORCH_MODULE(Linformer);

}  // namespace attnseg
