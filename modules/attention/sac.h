// SAC: Accelerating and Structuring Self-Attention via Sparse Adaptive Connection (Li et al.,
// arXiv:2003.09833). The sequence is a graph whose edges a learned edge predictor builds from the
// input; attention runs over the predicted edges only. The paper's predictor is an LSTM that
// emits node pairs one at a time, trained with REINFORCE on the task's reward. Here it is the
// same idea in a form that runs in parallel and learns by backpropagation:
//   1. the predictor embeds every token, e_i = k_i W_e (per head, r = edge_dim channels);
//   2. a candidate pool per token without scoring all N: the embeddings are hashed by a fixed
//      random rotation (angular LSH, `buckets` buckets), the tokens sorted by bucket and cut into
//      chunks of `chunk`; a token's candidates are its chunk and the chunk before it (2·chunk);
//   3. the predictor scores its candidates, s_ij = e_i·e_j / √r, and keeps the top `k` as edges;
//   4. out_i = Σ_{j∈E(i)} softmax_j(q_i·k_j/√d + s_ij) v_j: exactly k partners, and the kept
//      edges' scores enter their attention logits, so the task loss trains the predictor (the
//      differentiable stand-in for the paper's policy gradient).
// Cost O(N(d·r + chunk·r + k·d)) plus a sort: linear in N for fixed chunk and k. Nothing depends
// on the map's size, so it runs at any resolution.
#pragma once

#include <utility>

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// The predicted edges of every token: e [B, h, N, r] the predictor's embeddings, key_valid [N]
// bool or undefined, rotations [h, r, buckets/2]. Returns (edges [B, h, N, k] long: the partner
// tokens, scores [B, h, N, k]: their s_ij, −inf for a padded partner, which happens only when a
// token has fewer than k real candidates). N a multiple of `chunk`.
std::pair<at::Tensor, at::Tensor> sac_edges(const at::Tensor& e, const at::Tensor& key_valid,
                                            const at::Tensor& rotations, int64_t chunk, int64_t k);
// out_i = Σ_t softmax_t(q_i·k_{E[i,t]}/√d + s[i,t]) v_{E[i,t]}. q, k, v: [B, h, N, d].
at::Tensor sac_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& edges, const at::Tensor& scores);
}  // namespace functional

struct SacOptions {
  explicit SacOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, k) = 16;         // partners per token
  TORCH_ARG(int64_t, chunk) = 32;     // candidates come from two chunks of this many sorted tokens
  TORCH_ARG(int64_t, buckets) = 8;    // LSH buckets (even)
  TORCH_ARG(int64_t, edge_dim) = 16;  // r, the predictor's embedding width

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("k", k_);
    field("chunk", chunk_);
    field("buckets", buckets_);
    field("edge_dim", edge_dim_);
  }
  void check() const;
};

class SacImpl : public TokenHostImpl {
 public:
  explicit SacImpl(const SacOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  // Its choices (buckets, clusters, windows, pairings, edges, top-k) are made on the queries and
  // keys: the host projects them in float under any autocast.
  bool float_queries_keys() const override { return true; }
  int64_t token_multiple() const override { return options.chunk(); }
  // With keep_edges(true), each forward keeps its edges for last_edges() ([B, h, N (padded), k]):
  // a diagnostic, off by default so that no forward holds on to a tensor of the one before.
  void keep_edges(bool keep) { keep_edges_ = keep; }
  const at::Tensor& last_edges() const { return last_edges_; }

  SacOptions options;
  at::Tensor edge_weight;  // W_e [h, d, r]
  at::Tensor rotations;    // [h, r, buckets/2] buffer, fixed at construction

 private:
  bool keep_edges_ = false;
  at::Tensor last_edges_;
};
TORCH_MODULE(Sac);

}  // namespace attnseg
