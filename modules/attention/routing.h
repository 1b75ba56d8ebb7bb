// Efficient Content-Based Sparse Attention with Routing Transformers (Roy, Saffar, Vaswani and
// Grangier, arXiv:2003.05997), as lucidrains/routing-transformer's SelfAttention: some heads are
// local attention, the others routing attention (the paper's layout; lucidrains'
// n_local_attn_heads, google-research's local_num_heads), their outputs concatenated.
//
// Routing heads, as lucidrains' KmeansAttention with separate queries and keys: the
// unit-normalised queries and keys are routed by one online k-means (shared centroids,
// attnseg::OnlineKMeans); each cluster takes the w queries and, separately, the w keys nearest
// its centroid (top-w per centroid, so every cluster holds exactly w tokens), and the queries of
// a cluster attend to its keys. A query in several windows gets the mean of its outputs; a query
// in none gets zero from these heads.
// Local heads: each token attends to the local_window × local_window pixels around it (the
// sliding window of lucidrains' LocalAttention, square on the map), on the pattern engine. They
// are what every token reads whatever the routing did.
//
// Sizes: `clusters` centroids per routing head; the window is `window` tokens, or with
// window = 0 (the default) ceil(T / clusters) for the T = map_size tokens of the trained map:
// 24 at the default 8×48 with 16 clusters, so that there the k windows hold as many slots as
// there are tokens (k ≈ √T: the paper's O(N√N d)). lucidrains fixes the window the same way
// (window_size, with num_clusters = max_seq_len / window_size). The window stays at that size on
// any other map: on a larger one the k·w routed slots cover part of the tokens, the local heads
// cover all. Products per routing head 2·N·k·d (routing) + 2·k·w²·d (the windows), per local
// head 2·N·local_window²·d: linear in N.
//
// State: the centroids are buffers, moved only by a forward pass in training mode: the first
// one draws them from the batch and refines them (init_iters Lloyd steps, as lucidrains), each
// one then takes the moving average. lucidrains applies the average after the backward pass
// (a hook) and leaves the centroids off the sphere; here it is applied in the forward pass,
// after the routing, and the centroids are renormalised. The commitment loss, commitment_weight
// · mean((x̂ − μ_{a(x̂)})²) over the normalised queries and keys of the routing heads with the
// centroids detached, is aux_loss() after a training-mode forward.
#pragma once

#include "attention/kmeans.h"
#include "attention/pattern.h"

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
  TORCH_ARG(int64_t, window) = 0;       // 0: ceil(map_size tokens / clusters), at every map size
  TORCH_ARG(int64_t, local_heads) = -1;  // heads of local attention; −1: half the heads
  TORCH_ARG(int64_t, local_window) = 7;  // side of the local heads' square window, odd
  TORCH_ARG(double, commitment_weight) = 1e-4;  // lucidrains' commitment_factor
  TORCH_ARG(double, decay) = 0.999;             // lucidrains' kmeans_ema_decay
  TORCH_ARG(int64_t, init_iters) = 10;          // lucidrains' KMEAN_INIT_ITERS; 0: random centroids

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("clusters", clusters_);
    field("window", window_);
    field("local_heads", local_heads_);
    field("local_window", local_window_);
    field("commitment_weight", commitment_weight_);
    field("decay", decay_);
    field("init_iters", init_iters_);
  }
  void check() const;
  // local_heads resolved: −1 is half the heads, rounded down.
  int64_t local_head_count() const { return local_heads_ < 0 ? host_.heads() / 2 : local_heads_; }
  int64_t routing_head_count() const { return host_.heads() - local_head_count(); }
};

class RoutingImpl : public PatternedBlockImpl {
 public:
  explicit RoutingImpl(const RoutingOptions& options);
  void reset();
  // The local heads' window on an H×W map (the routing heads' keys depend on the content).
  Pattern build_pattern(int64_t height, int64_t width) const override;
  // With routing heads, any pixel can reach any output pixel.
  std::vector<int64_t> declared_support(int64_t height, int64_t width, int64_t query) const override;
  // Heads [0, local heads) attend to their window, the others are routed.
  at::Tensor attend_raster(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const TokenGrid& grid) override;
  int64_t core_macs_on(int64_t b, int64_t height, int64_t width) const override;
  // Its choices (buckets, clusters, windows, pairings, edges, top-k) are made on the queries and
  // keys: the host projects them in float under any autocast.
  bool float_queries_keys() const override { return true; }
  torch::Tensor aux_loss() const override { return aux_loss_; }
  // Tokens per cluster window on a map of n tokens (the same at every n, cut to n).
  int64_t window_for(int64_t n) const;

  RoutingOptions options;
  OnlineKMeans kmeans{nullptr};

 private:
  at::Tensor aux_loss_;
};
TORCH_MODULE(Routing);

}  // namespace attnseg
