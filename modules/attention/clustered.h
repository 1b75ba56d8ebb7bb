// Fast Transformers with Clustered Attention (Vyas, Katharopoulos, Fleuret, arXiv:2007.04825),
// as idiap/fast-transformers' ClusteredAttention and ImprovedClusteredAttention: the queries
// are hashed to bits by random hyperplanes and grouped into C clusters by a few Lloyd
// iterations of k-means in Hamming space (attention/hashing.h); each cluster's centroid (the
// mean of its queries) attends once to all keys and its output is every member's, O(N·C·d).
// The improved form (i-clustered, the paper's Eq. 9): each query attends exactly, with its own
// q, to the top-k keys of its cluster's centroid, scaled to the centroid's attention mass on
// those keys, and takes the centroid's attention for every other key, O(N·(C + k)·d).
//
// On the token host: no padding (the mechanism takes any token count) and no size-dependent
// parameter. With C ≥ N every query is its own cluster (k-means' zero-distortion solution, so
// no clustering is run) and both forms are full attention. Hyperplanes: evaluation uses the
// `planes` buffer drawn at construction (saved with the weights), so it is deterministic;
// training draws fresh ones every forward (the reference draws them every call) unless
// `redraw` is false.
#pragma once

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// out_i = softmax(q̄_c·Kᵀ/√d) V with c = cluster[i] and q̄_c the mean of the queries in c.
// q, k: [B, h, N, d]; v: [B, h, N, dv]; cluster: [B, h, N] long in [0, clusters).
at::Tensor clustered_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& cluster, int64_t clusters);
// out_i = m_c Σ_{l∈T_c} softmax_{T_c}(q_i·k_l/√d) v_l + Σ_{l∉T_c} A_cl v_l, with A_c =
// softmax(q̄_c·Kᵀ/√d), T_c its top-k keys and m_c = Σ_{l∈T_c} A_cl. Shapes as above.
at::Tensor improved_clustered_attention(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const at::Tensor& cluster,
                                        int64_t clusters, int64_t topk);
}  // namespace functional

struct ClusteredOptions {
  explicit ClusteredOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, clusters) = 32;
  TORCH_ARG(int64_t, iterations) = 10;  // Lloyd iterations (fast-transformers' default)
  TORCH_ARG(int64_t, bits) = 32;        // hash length
  TORCH_ARG(bool, hash_bias) =
      true;  // hyperplanes with offsets: Hamming distance follows L2, not only angle
  TORCH_ARG(bool, improved) =
      false;  // i-clustered: each query's exact attention to its cluster's top-k keys
  TORCH_ARG(int64_t, topk) = 32;
  TORCH_ARG(bool, redraw) = true;  // training forwards draw fresh hyperplanes

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("clusters", clusters_);
    field("iterations", iterations_);
    field("bits", bits_);
    field("hash_bias", hash_bias_);
    field("improved", improved_);
    field("topk", topk_);
    field("redraw", redraw_);
  }
  void check() const;
};

class ClusteredImpl : public TokenHostImpl {
 public:
  explicit ClusteredImpl(const ClusteredOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  // Its choices (buckets, clusters, windows, pairings, edges, top-k) are made on the queries and
  // keys: the host projects them in float under any autocast.
  bool float_queries_keys() const override { return true; }
  // The cluster of each query, [B, h, N] long in [0, min(clusters, N)).
  at::Tensor cluster(const at::Tensor& q);
  const at::Tensor& planes() const { return planes_; }

  ClusteredOptions options;

 private:
  at::Tensor planes_;  // [bits, d + 1] buffer
};
TORCH_MODULE(Clustered);

}  // namespace attnseg
