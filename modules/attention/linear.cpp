#include "attention/linear.h"

#include <ATen/ATen.h>

#include <cmath>

#include "attention/functional.h"
#include "core/device.h"

namespace attnseg {

namespace functional {
at::Tensor linear_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool causal,
                            double eps, int64_t chunk) {
  const at::Tensor fq = at::elu(q) + 1, fk = at::elu(k) + 1;
  if (!causal) {
    const at::Tensor kv = at::matmul(fk.transpose(-1, -2), v);             // [B, h, d, dv]
    const at::Tensor z = at::matmul(fq, fk.sum(-2).unsqueeze(-1)) + eps;  // [B, h, N, 1]
    return at::matmul(fq, kv) / z;
  }
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), dv = v.size(3);
  const int64_t chunks = (n + chunk - 1) / chunk, padded = chunks * chunk;
  // Padding goes after the last token, so no real query ever sees it (j ≤ i).
  auto pad = [&](const at::Tensor& t) {
    return (padded == n ? t : at::constant_pad_nd(t, {0, 0, 0, padded - n})).view({b, h, chunks, chunk, t.size(3)});
  };
  const at::Tensor cq = pad(fq), ck = pad(fk), cv = pad(v);
  // Inside a chunk: the dense lower-triangular (self included) products.
  const at::Tensor lower = at::ones({chunk, chunk}, q.options().dtype(at::kBool)).tril();
  const at::Tensor scores = at::matmul(cq, ck.transpose(-1, -2)).masked_fill(lower.logical_not(), 0);
  // Across chunks: the sums of every earlier chunk's φ(K)ᵀV and φ(K) (exclusive prefix sums).
  const at::Tensor kv = at::matmul(ck.transpose(-1, -2), cv);  // [B, h, chunks, d, dv]
  const at::Tensor ksum = ck.sum(-2);                          // [B, h, chunks, d]
  const at::Tensor kv_before = kv.cumsum(2) - kv, ksum_before = ksum.cumsum(2) - ksum;
  const at::Tensor numerator = at::matmul(scores, cv) + at::matmul(cq, kv_before);
  const at::Tensor denominator = scores.sum(-1, /*keepdim=*/true) + at::matmul(cq, ksum_before.unsqueeze(-1)) + eps;
  return (numerator / denominator).view({b, h, padded, dv}).narrow(2, 0, n);
}
}  // namespace functional

void LinearAttentionOptions::check() const {
  host_.check("linear");
  TORCH_CHECK(std::isfinite(eps_) && eps_ >= 0, "linear: eps must be finite and non-negative, got ", eps_);
  TORCH_CHECK(chunk_ >= 1, "linear: chunk must be at least 1, got ", chunk_);
}

LinearAttentionImpl::LinearAttentionImpl(const LinearAttentionOptions& options_) : options(options_) {
  reset();
}

void LinearAttentionImpl::reset() {
  options.check();
  reset_host(options.host());
}

at::Tensor LinearAttentionImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       const TokenGrid&) {
  // The sums run over every token of unbounded positive terms (elu + 1): in float, whatever
  // the autocast, as they would overflow half and lose digits in bf16.
  AutocastDisabled in_float;
  return functional::linear_attention(functional::at_least_float(q), functional::at_least_float(k),
                                      functional::at_least_float(v), options.causal(),
                                      options.eps(), options.chunk());
}

int64_t LinearAttentionImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width();
  if (!options.causal()) return 2 * b * h * n * d * d + b * h * n * d;  // φ(K)ᵀV, φ(Q)·it, the normaliser
  const int64_t c = options.chunk(), padded = (n + c - 1) / c * c;
  // per chunk: scores and their use (2·c²·d), the chunk's φ(K)ᵀV and the queries' read of the
  // carried sum (2·c·d²), the carried normaliser (c·d)
  return b * h * padded * (2 * c * d + 2 * d * d + d);
}

}  // namespace attnseg
