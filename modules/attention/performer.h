// Rethinking Attention with Performers (Choromanski et al., arXiv:2009.14794; FAVOR+, first as
// arXiv:2006.03555), as google-research/performer's fast_attention and lucidrains'
// performer-pytorch: softmax attention approximated with positive orthogonal random features
// φ(x) = exp(Wx − ‖x‖²/2) / √m (x scaled by d^−1/4, so φ(q)·φ(k) estimates exp(q·k/√d)
// without bias), out = φ(Q)(φ(K)ᵀV) / (φ(Q)·Σφ(K)): linear in N, and the estimate sharpens as
// the number of features m grows. The m×d projection W is a buffer (rows orthogonal in
// blocks of d, norms drawn from the χ distribution of a Gaussian vector's), saved in the
// checkpoint, redrawn every `redraw_interval` forward passes in training mode only.
#pragma once

#include "attention/sequence.h"

namespace attnseg {

namespace functional {
// m × d: blocks of d orthonormal rows (QR of Gaussian matrices; the last block cut to m), each
// row scaled to the norm of an independent Gaussian d-vector, as a Gaussian matrix's rows are.
at::Tensor orthogonal_random_features(int64_t m, int64_t d);
// Positive random features of x [..., N, d] under the m × d projection: exp(x̂Wᵀ − ‖x̂‖²/2 − s)
// / √m + eps, x̂ = x·d^−1/4, where s is the maximum over each query's features (`is_query`) or
// over all keys' (cancels in the normalised product; keeps exp finite).
at::Tensor softmax_kernel_features(const at::Tensor& x, const at::Tensor& projection, bool is_query);
// out = φ(Q)(φ(K)ᵀV) / (φ(Q)·Σφ(K)). q, k: [B, h, N, d]; v: [B, h, N, dv]; projection: m × d.
at::Tensor performer_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& projection);
}  // namespace functional

struct PerformerOptions {
  explicit PerformerOptions(int64_t channels) : host_(channels) {}
  TORCH_ARG(TokenHostOptions, host);
  TORCH_ARG(int64_t, features) = 64;          // m
  TORCH_ARG(int64_t, redraw_interval) = 1000;  // 0: never (performer-pytorch's default is 1000)

 public:
  template <typename Field>
  void fields(Field&& field) {
    host_.fields(field);
    field("features", features_);
    field("redraw_interval", redraw_interval_);
  }
  void check() const;
};

class PerformerImpl : public TokenHostImpl {
 public:
  explicit PerformerImpl(const PerformerOptions& options);
  void reset();
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid& grid) override;
  int64_t core_macs(int64_t b, int64_t n) const override;
  const at::Tensor& projection() const { return projection_; }

  PerformerOptions options;

 private:
  at::Tensor projection_;      // [m, d] buffer
  at::Tensor training_calls_;  // [1] long buffer: training forward passes since the last draw
};
TORCH_MODULE(Performer);

}  // namespace attnseg
