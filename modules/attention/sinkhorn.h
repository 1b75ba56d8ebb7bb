// Sparse Sinkhorn Attention (Tay, Bahri, Yang, Metzler and Juan, arXiv:2002.11296), as
// lucidrains/sinkhorn-transformer's non-causal SinkhornAttention: the tokens are cut into blocks
// of `bucket_size`; a sorting network scores every block against every block position, R =
// ReLU([Σ q, Σ k] W) (the sums of each block's queries and keys, W [2d, blocks] per head);
// log(R + ε) (plus Gumbel noise in training), divided by a temperature, becomes doubly
// stochastic through `sinkhorn_iters` log-space Sinkhorn iterations (rows, then columns); as the
// reference (its zero_all_but_top), each row then keeps only its largest entry, so query block i
// is paired with one block π(i), whose keys and values enter scaled by R[i, π(i)] (the product
// R·blocks with the sparse R, done as a gather: linear in N). With soft=true the paper's soft
// permutation instead: the sorted block i is Σ_j R[i, j]·block_j, the dense product R·blocks
// (2·N·nb·d more products: quadratic in N). Each query block attends jointly to its own block
// and to its sorted block (2·bucket_size keys).
//
// On a feature map: blocks in the host's token order (raster rows, or tiles with order=tiles).
// W has one column per block position of the trained map (map_size); at another size its columns
// are resampled linearly along the block index to the new block count, so the block runs at any
// resolution. Padding: the host pads to a multiple of bucket_size; padded tokens count in no
// block sum and are masked as keys, in the own and in the sorted block. The scores are
// softmax(q·k/√d_head) (the reference divides by the model width's root instead).
//
// Cost: B·h·(2d·nb² + 4·N·bucket_size·d) products, nb = N / bucket_size: linear in N up to the
// sorting network's nb² term (small beside the attention while nb ≪ 2·bucket_size²); soft adds
// B·h·2·N·nb·d.
#pragma once

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// exp of log_r after `iters` rounds of r ← r − logsumexp over each row, then over each column.
// log_r [..., n, n].
at::Tensor sinkhorn_normalise(const at::Tensor& log_r, int64_t iters);
// The doubly stochastic sorting matrix [B, h, nb, nb] of the blocks of q, k [B, h, N, d] (N a
// multiple of bucket_size): Sinkhorn((log(ReLU([Σ_block q, Σ_block k] W) + 1e-6) + noise) / T).
// weight [h, 2d, nb]; key_valid [N] bool or undefined (all real); noise [B, h, nb, nb] or
// undefined.
at::Tensor sinkhorn_sorting_matrix(const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& weight, const at::Tensor& key_valid,
                                   int64_t bucket_size, int64_t iters, double temperature,
                                   const at::Tensor& noise);
// out_i = Σ_j softmax_j(q_i·k̃_j/√d) ṽ_j over the keys of i's block and of its partner block
// π = argmax_j R[block(i), j], the partner's keys and values scaled by R[block(i), π]; padded keys
// (key_valid false) excluded. With `soft`, the sorted block is instead the mixture Σ_j R[block(i),
// j] block_j of every block (padded tokens as zeros). Arguments as sinkhorn_sorting_matrix; v [B,
// h, N, dv].
at::Tensor sinkhorn_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& weight, const at::Tensor& key_valid,
                              int64_t bucket_size, int64_t iters, double temperature,
                              const at::Tensor& noise, bool soft = false);
}  // namespace functional

struct SinkhornOptions {
  explicit SinkhornOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, bucket_size) = 32;    // tokens per block: 12 blocks on the trained 8×48 map
  TORCH_ARG(int64_t, sinkhorn_iters) = 5;  // lucidrains' SinkhornTransformer default
  TORCH_ARG(double, temperature) = 0.75;   // lucidrains' default
  TORCH_ARG(bool, gumbel) = true;          // Gumbel noise on the sorting logits, in training only
  TORCH_ARG(bool, soft) = false;  // true: mix every block by R (the paper), not R's top entry

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("bucket_size", bucket_size_);
    field("sinkhorn_iters", sinkhorn_iters_);
    field("temperature", temperature_);
    field("gumbel", gumbel_);
    field("soft", soft_);
  }
  void check() const;
};

class SinkhornImpl : public TokenHostImpl {
 public:
  explicit SinkhornImpl(const SinkhornOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  // Its choices (buckets, clusters, windows, pairings, edges, top-k) are made on the queries and
  // keys: the host projects them in float under any autocast.
  bool float_queries_keys() const override { return true; }
  int64_t token_multiple() const override { return options.bucket_size(); }
  // The sorting network's weight for `blocks` blocks: [h, 2d, blocks], resampled from the trained
  // block count.
  at::Tensor weight_for(int64_t blocks) const;
  // The sorting matrix of q, k as attend() builds it, without noise: [B, h, nb, nb].
  at::Tensor sorting_matrix(const at::Tensor& q, const at::Tensor& k, const TokenGrid& grid) const;

  SinkhornOptions options;
  at::Tensor weight;  // [h, 2d, trained blocks] parameter
};
TORCH_MODULE(Sinkhorn);

}  // namespace attnseg
