// Large Memory Layers with Product Keys (Lample et al., arXiv:1907.05242), as
// facebookresearch/XLM's HashingMemory: a memory of M = n_keys² values read by each token's
// query. Per head the query (the host's query projection, k_dim = the head width, batch-normed
// as XLM's query_batchnorm) is split in halves; each half is scored against its own n_keys
// sub-keys, the top-k of each half give k² candidate keys whose scores are the sums of the
// halves' scores, and the top-k of those are read from the value table [M, head width] (shared
// by the heads, as XLM's one EmbeddingBag) with softmax weights. So a query scores 2·n_keys
// sub-keys, never the M product keys, and a read touches k rows. The host's keys and values
// are not used (the host builds no projection for them); each head's
// read is that head's output, mixed by the host's output projection (XLM sums the heads).
// Nothing depends on the map size or the token order.
#pragma once

#include <torch/nn/modules/batchnorm.h>

#include <memory>
#include <tuple>
#include <vector>

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// The top-k product keys of each query: q [B, h, N, 2·e], sub_keys [h, 2, n_keys, e] → (scores,
// indices) [B, h, N, topk], indices into the n_keys² product keys (i·n_keys + j for the pair of
// sub-keys i, j), scores s1_i + s2_j, best first.
std::tuple<at::Tensor, at::Tensor> product_key_topk(const at::Tensor& q, const at::Tensor& sub_keys, int64_t topk);
// out = Σ_t softmax_t(scores) values[indices_t]: the embedding-bag read of `values` [M, dv] →
// [B, h, N, dv].
at::Tensor product_key_read(const at::Tensor& scores, const at::Tensor& indices, const at::Tensor& values);
}  // namespace functional

struct ProductKeyOptions {
  explicit ProductKeyOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, n_keys) = 32;     // sub-keys per half: M = n_keys² memory slots
  TORCH_ARG(int64_t, topk) = 8;        // keys kept per half and slots read per query
  TORCH_ARG(bool, query_norm) = true;  // XLM's query_batchnorm

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("n_keys", n_keys_);
    field("topk", topk_);
    field("query_norm", query_norm_);
  }
  void check() const;
};

class ProductKeyImpl : public TokenHostImpl {
 public:
  explicit ProductKeyImpl(const ProductKeyOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  // Its choices (buckets, clusters, windows, pairings, edges, top-k) are made on the queries and
  // keys: the host projects them in float under any autocast.
  bool float_queries_keys() const override { return true; }
  TokenInputs inputs() const override { return {/*queries=*/true, /*keys=*/false, /*values=*/false}; }
  // Sub-keys scored by the last forward pass, all queries and heads together.
  int64_t scored_keys() const { return scored_keys_; }

  ProductKeyOptions options;
  at::Tensor sub_keys;  // [h, 2, n_keys, head width / 2]
  at::Tensor values;    // [n_keys², head width]
  torch::nn::BatchNorm1d query_norm{nullptr};

 private:
  int64_t scored_keys_ = 0;
};
TORCH_MODULE(ProductKey);

}  // namespace attnseg
