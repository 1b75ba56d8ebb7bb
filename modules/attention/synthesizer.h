// Synthesizer: Rethinking Self-Attention in Transformer Models (Tay et al., arXiv:2005.00743):
// the attention weights are synthesised without any query-key product. `dense`: a per-token
// two-layer MLP gives the token's row of logits over the ℓ key positions, B_i = W2 relu(W1 x_i
// + b1) + b2, with x_i the token's query projection (per head; the host's keys are not used);
// `random`: a learned ℓ×ℓ matrix R per head, the same for every input (fixed when `trainable`
// is false: the paper's fixed random synthesizer); `factorized_random`: R = R1 R2ᵀ with R1, R2
// [ℓ, rank]. Then Y = softmax(B) V. ℓ is the trained map's token count (map_size); on a map of
// another size the key axis of W2, b2 and R (and R's query axis) is resampled bilinearly in 2-D,
// as linformer resamples its projections, so the block runs at any resolution. The logits are
// not rescaled: a region of the map keeps its share of the softmax at any size.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// B = W2 relu(W1 x + b1) + b2 per head: x [B, h, N, d], w1 [h, d, r], b1 [h, r], w2 [h, r, N],
// b2 [h, N] → [B, h, N, N].
at::Tensor dense_synthesizer_logits(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                                    const at::Tensor& w2, const at::Tensor& b2);
// Y = softmax(B) V over the key axis: logits [B or 1, h, N, N], v [B, h, N, dv].
at::Tensor synthesized_attention(const at::Tensor& logits, const at::Tensor& v);
}  // namespace functional

struct SynthesizerOptions {
  explicit SynthesizerOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(std::string, kind) = "dense";  // dense, random or factorized_random
  TORCH_ARG(int64_t, hidden) = 0;          // dense: width of the MLP's hidden layer (0: head width)
  TORCH_ARG(int64_t, rank) = 8;            // factorized_random: r of R1, R2 [ℓ, r]
  TORCH_ARG(bool, trainable) = true;       // random, factorized_random: false keeps R as drawn

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("kind", kind_);
    field("hidden", hidden_);
    field("rank", rank_);
    field("trainable", trainable_);
  }
  void check() const;
};

class SynthesizerImpl : public TokenHostImpl {
 public:
  explicit SynthesizerImpl(const SynthesizerOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  TokenInputs inputs() const override { return {/*queries=*/options.kind() == "dense", /*keys=*/false, /*values=*/true}; }
  // The logits for a map of the grid's size in its token order: [B, h, N, N] for dense (from
  // q), [1, h, N, N] for the random kinds (q unused).
  at::Tensor logits(const at::Tensor& q, const TokenGrid& grid) const;

  SynthesizerOptions options;
  at::Tensor w1, b1, w2, b2;  // dense: [h, d, r], [h, r], [h, r, h0, w0], [h, h0, w0]
  at::Tensor r, r1, r2;       // random: [h, h0·w0, h0·w0]; factorized: [h, h0·w0, rank] twice

 private:
  int64_t hidden_width() const;
};
TORCH_MODULE(Synthesizer);

}  // namespace attnseg
