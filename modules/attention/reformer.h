// Reformer: The Efficient Transformer (Kitaev, Kaiser, Levskaya, arXiv:2001.04451), LSH
// attention as google/trax's LSHSelfAttention and lucidrains/reformer-pytorch's LSHAttention:
// queries and keys share one projection (the keys are the unit-normalised queries), random
// rotations hash them into buckets (angular LSH, attention/hashing.h), the tokens are sorted
// by (bucket, position) and cut into chunks of bucket_size, and each chunk attends to itself
// and the chunk before it; a token attends to itself only when nothing else is there (its
// score set to −1e5, as trax). n_hashes rounds are sorted separately, laid end to end (chunks
// look back across rounds, as in both references) and combined by the softmax of their
// logsumexps, which is attention over the union of the rounds' key sets. O(N·bucket_size·d)
// plus the hashing.
//
// On the token host: the host's q is the shared query-key, so the block reads no keys and the
// host builds no key projection; queries are projected in float under any autocast (the hash
// would move tokens on rounded ones). The host pads the tokens to a multiple of bucket_size;
// padded tokens hash to a bucket after every real one and are masked as keys (−1e9). n_buckets
// = 0 follows the map: one bucket per chunk (rounded up to even) up to max_buckets (64), so a
// map of another resolution keeps chunk-sized buckets until the hashing, N·d·buckets/2
// products, would grow faster than N; past that a bucket spans several chunks. Rotations: evaluation
// draws them from a generator seeded by the `rotation_seed` buffer (drawn at construction,
// saved with the weights), so it is deterministic at every map size; training draws fresh ones
// every forward (the references' behaviour) unless `redraw` is false.
#pragma once

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// out_i = Σ_r softmax_r(lse_ir) · o_ir, o_ir = softmax_j(q_i·k̂_j/√d) v_j over the keys j in
// i's chunk and the chunk before it in round r's order by (bucket, position), k̂ = qk/‖qk‖;
// self at −1e5, padded keys (key_valid false) and, when causal, later keys at −1e9.
// qk: [B, h, N, d]; v: [B, h, N, dv]; buckets: [B, h, rounds, N] long; N a multiple of chunk;
// key_valid: [N] bool or undefined.
at::Tensor lsh_attention(const at::Tensor& qk, const at::Tensor& v, const at::Tensor& buckets,
                         int64_t chunk, const at::Tensor& key_valid, bool causal);
}  // namespace functional

struct ReformerOptions {
  explicit ReformerOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, bucket_size) = 32;  // chunk length; the host pads to a multiple of it
  TORCH_ARG(int64_t, n_hashes) = 2;      // hash rounds
  TORCH_ARG(int64_t, n_buckets) = 0;     // even; 0: padded tokens / bucket_size, rounded up to even,
                                         // at most max_buckets
  // With n_buckets 0, the most buckets: hashing costs N·d·buckets/2 products per round, so
  // buckets that grow with N would make it quadratic; past max_buckets chunks a bucket spans
  // several chunks, as in the paper's long sequences.
  TORCH_ARG(int64_t, max_buckets) = 64;
  TORCH_ARG(bool, causal) = false;       // raster order: a token attends to itself and earlier ones
  TORCH_ARG(bool, redraw) = true;        // training forwards draw fresh rotations

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("bucket_size", bucket_size_);
    field("n_hashes", n_hashes_);
    field("n_buckets", n_buckets_);
    field("max_buckets", max_buckets_);
    field("causal", causal_);
    field("redraw", redraw_);
  }
  void check() const;
};

class ReformerImpl : public TokenHostImpl {
 public:
  explicit ReformerImpl(const ReformerOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  int64_t token_multiple() const override { return options.bucket_size(); }
  TokenInputs inputs() const override { return {/*queries=*/true, /*keys=*/false, /*values=*/true}; }
  bool float_queries_keys() const override { return true; }

  // Buckets used for n (padded) tokens.
  int64_t buckets_for(int64_t n) const;
  // The rotations an evaluation forward uses on n (padded) tokens: [d, n_hashes, buckets_for(n)/2].
  at::Tensor evaluation_rotations(int64_t n) const;
  // The buckets of the shared query-keys in each round ([B, h, n_hashes, N] long), padded tokens
  // in bucket buckets_for(N), after every real one.
  at::Tensor hash(const at::Tensor& qk, const TokenGrid& grid);

  // LibTorch's Module::to(dtype) converts every buffer, integer ones too: the seed would round
  // (to 24 bits in float, 8 in bfloat16) and the converted block would hash otherwise. These
  // convert the rest and keep the seed an exact int64.
  using TokenHostImpl::to;
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;

  ReformerOptions options;

 private:
  at::Tensor rotation_seed_;  // [1] long buffer
};
TORCH_MODULE(Reformer);

}  // namespace attnseg
