// Efficient Content-Based Sparse Attention with Routing Transformers (Roy, Saffar, Vaswani and
// Grangier, arXiv:2003.05997), as lucidrains/routing-transformer's KmeansAttention with separate
// queries and keys: the unit-normalised queries and keys are routed by one online k-means
// (shared centroids, attnseg::OnlineKMeans); each cluster takes the w queries and, separately,
// the w keys nearest its centroid (top-w per centroid, so every cluster holds exactly w tokens),
// and the queries of a cluster attend to its keys. A query in several windows gets the mean of
// its outputs; a query in none gets zero (as lucidrains: the layer is meant beside local
// attention, which here is the residual path and the other heads' blocks).
//
// Sizes: `clusters` centroids (their count is fixed by training); the window is `window`
// tokens, or with window = 0 (the default) ceil(N / clusters), so that at any map size the k
// windows hold as many slots as there are tokens (they may overlap, leaving some tokens in
// none): 24 at the trained 8×48 map with 16 clusters
// (k ≈ √N there, the paper's O(N√N d)), 300 at the demo's 60×80. The products are
// 2·N·k·d (routing) + 2·k·w²·d (attention) = O(N·w·d): linear in N for a fixed window,
// N²/k for the following window.
//
// State: the centroids are buffers, moved only by a forward pass in training mode: the first
// one draws them from the batch and refines them (init_iters Lloyd steps, as lucidrains), each
// one then takes the moving average. lucidrains applies the average after the backward pass
// (a hook) and leaves the centroids off the sphere; here it is applied in the forward pass,
// after the routing, and the centroids are renormalised. The commitment loss, commitment_weight
// · mean((x̂ − μ_{a(x̂)})²) over the normalised queries and keys with the centroids detached, is
// aux_loss() after a training-mode forward.
#pragma once

#include "attention/kmeans.h"
#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// out_i = mean over the clusters c whose query window holds i of Σ_{j ∈ keys(c)}
// softmax_j(q_i·k_j/√d) v_j; windows: the w tokens of largest similarity to each centroid.
// q, k: [B, h, N, d]; v: [B, h, N, dv]; query_similarity, key_similarity: [B, h, N, k].
at::Tensor routed_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& query_similarity, const at::Tensor& key_similarity,
                            int64_t w);
// The same with the similarities to `centroids` [h, k, d] of the unit-normalised q and k.
at::Tensor routing_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& centroids, int64_t w);
}  // namespace functional

struct RoutingOptions {
  explicit RoutingOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, clusters) = 16;
  TORCH_ARG(int64_t, window) = 0;               // 0: ceil(N / clusters) at every map size
  TORCH_ARG(double, commitment_weight) = 1e-4;  // lucidrains' commitment_factor
  TORCH_ARG(double, decay) = 0.999;             // lucidrains' kmeans_ema_decay
  TORCH_ARG(int64_t, init_iters) = 10;          // lucidrains' KMEAN_INIT_ITERS; 0: random centroids

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("clusters", clusters_);
    field("window", window_);
    field("commitment_weight", commitment_weight_);
    field("decay", decay_);
    field("init_iters", init_iters_);
  }
  void check() const;
};

class RoutingImpl : public TokenHostImpl {
 public:
  explicit RoutingImpl(const RoutingOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  // Its choices (buckets, clusters, windows, pairings, edges, top-k) are made on the queries and
  // keys: the host projects them in float under any autocast.
  bool float_queries_keys() const override { return true; }
  torch::Tensor aux_loss() const override { return aux_loss_; }
  // Tokens per cluster window on a sequence of n tokens.
  int64_t window_for(int64_t n) const;

  RoutingOptions options;
  OnlineKMeans kmeans{nullptr};

 private:
  at::Tensor aux_loss_;
};
TORCH_MODULE(Routing);

}  // namespace attnseg
