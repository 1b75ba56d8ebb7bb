// Transformers are RNNs: Fast Autoregressive Transformers with Linear Attention (Katharopoulos
// et al., arXiv:2006.16236), as idiap/fast-transformers' LinearAttention and
// CausalLinearAttention: the softmax kernel replaced by φ(q)·φ(k) with φ(x) = elu(x) + 1, so
// out = φ(Q)(φ(K)ᵀV) / (φ(Q)·Σφ(K)) costs O(N d²), never forming the N×N matrix. The causal
// form (tokens in raster order, each attending to itself and those before it) is the
// recurrent one; it is computed in chunks: dense inside a chunk, the running sums of φ(K)ᵀV
// and φ(K) carried across chunks.
#pragma once

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / (φ(q_i)·Σ_j φ(k_j) + eps), j over all tokens, or j ≤ i when
// `causal` (in chunks of `chunk` tokens). q, k: [B, h, N, d]; v: [B, h, N, dv] → [B, h, N, dv].
at::Tensor linear_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                            double eps, int64_t chunk = 64);
}  // namespace functional

struct LinearAttentionOptions {
  explicit LinearAttentionOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(bool, causal) = false;
  TORCH_ARG(double, eps) = 1e-6;  // fast-transformers' default
  TORCH_ARG(int64_t, chunk) = 64;  // causal form: tokens per dense chunk

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("causal", causal_);
    field("eps", eps_);
    field("chunk", chunk_);
  }
  void check() const;
};

class LinearAttentionImpl : public TokenHostImpl {
 public:
  explicit LinearAttentionImpl(const LinearAttentionOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;

  LinearAttentionOptions options;
};
TORCH_MODULE(LinearAttention);

}  // namespace attnseg
