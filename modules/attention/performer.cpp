#include "attention/performer.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>

#include "attention/functional.h"
#include "core/device.h"

namespace attnseg {

namespace functional {
at::Tensor orthogonal_random_features(int64_t m, int64_t d) {
  std::vector<at::Tensor> blocks;
  for (int64_t rows = 0; rows < m; rows += d) {
    const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({d, d})));  // orthonormal columns
    blocks.push_back(q.t().narrow(0, 0, std::min(d, m - rows)));
  }
  const at::Tensor norms = at::randn({m, d}).norm(2, {1}, /*keepdim=*/true);
  return at::cat(blocks, 0) * norms;
}

at::Tensor softmax_kernel_features(const at::Tensor& x, const at::Tensor& projection, bool is_query) {
  const int64_t d = x.size(-1), m = projection.size(0);
  const at::Tensor scaled = x * std::pow(static_cast<double>(d), -0.25);
  at::Tensor dash = at::matmul(scaled, projection.t().to(x.scalar_type()));  // [..., N, m]
  // The stabiliser is a constant per query (or one for all keys): it cancels in the ratio.
  const at::Tensor stabiliser =
      is_query ? std::get<0>(dash.max(-1, /*keepdim=*/true)) : dash.amax({-2, -1}, /*keepdim=*/true);
  // (exp(wx − ‖x‖²/2 − stabiliser) + ε)/√m, the 1/√m folded into the exponent, so that the
  // [N, m] scores are walked twice (in place), not five times. The matmul's backward keeps its
  // inputs, not dash, so dash may change in place; exp_ keeps its result, which is not changed.
  const at::Tensor offset = scaled.pow(2).sum(-1, /*keepdim=*/true) / 2 + stabiliser.detach() +
                            0.5 * std::log(static_cast<double>(m));
  return dash.sub_(offset).exp_() + 1e-4 / std::sqrt(static_cast<double>(m));
}

at::Tensor performer_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& projection) {
  const at::Tensor fq = softmax_kernel_features(q, projection, /*is_query=*/true);
  const at::Tensor fk = softmax_kernel_features(k, projection, /*is_query=*/false);
  const at::Tensor kv = at::matmul(fk.transpose(-1, -2), v);          // [B, h, m, dv]
  const at::Tensor z = at::matmul(fq, fk.sum(-2).unsqueeze(-1));      // [B, h, N, 1]
  return at::matmul(fq, kv) / z;
}
}  // namespace functional

void PerformerOptions::check() const {
  host_.check("performer");
  TORCH_CHECK(features_ >= 1, "performer: features must be at least 1, got ", features_);
  TORCH_CHECK(redraw_interval_ >= 0, "performer: redraw_interval must be 0 (never) or positive, got ",
              redraw_interval_);
}

PerformerImpl::PerformerImpl(const PerformerOptions& options_) : options(options_) {
  reset();
}

void PerformerImpl::reset() {
  options.check();
  reset_host(options.host());
  projection_ = register_buffer(
      "projection", functional::orthogonal_random_features(options.features(), options.host().head_width()));
  training_calls_ = register_buffer("training_calls", at::zeros({1}, at::kLong));
}

at::Tensor PerformerImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid&) {
  if (is_training() && options.redraw_interval() > 0) {
    torch::NoGradGuard no_grad;
    if (training_calls_.item<int64_t>() >= options.redraw_interval()) {
      projection_.copy_(functional::orthogonal_random_features(projection_.size(0), projection_.size(1)));
      training_calls_.zero_();
    }
    training_calls_.add_(1);
  }
  // The features are exponentials of scores: in float, whatever the autocast.
  AutocastDisabled in_float;
  return functional::performer_attention(functional::at_least_float(q), functional::at_least_float(k),
                                         functional::at_least_float(v), projection_);
}

int64_t PerformerImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width(), m = options.features();
  // the features of Q and K (2·n·d·m), φ(K)ᵀV and φ(Q)·it (2·n·m·d), the normaliser (n·m)
  return b * h * n * (4 * d * m + m);
}

}  // namespace attnseg
