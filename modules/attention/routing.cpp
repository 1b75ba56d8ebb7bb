#include "attention/routing.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "attention/hashing.h"
#include "core/device.h"

namespace attnseg {

namespace functional {
at::Tensor routed_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& query_similarity, const at::Tensor& key_similarity,
                            int64_t w) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3), dv = v.size(3);
  const int64_t clusters = query_similarity.size(-1);
  const at::Tensor queries = top_w_per_cluster(query_similarity, w).view({b, h, clusters * w});
  const at::Tensor keys = top_w_per_cluster(key_similarity, w).view({b, h, clusters * w});
  auto pick = [&](const at::Tensor& t, const at::Tensor& index) {
    return gather_tokens(t, index).view({b, h, clusters, w, t.size(3)});
  };
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const at::Tensor weights =
      at::softmax(at::matmul(pick(q, queries) * scale, pick(k, keys).transpose(-1, -2)), -1);
  const at::Tensor routed = at::matmul(weights, pick(v, keys)).view({b, h, clusters * w, dv});
  const at::Tensor sum =
      at::zeros({b, h, n, dv}, routed.options())
          .scatter_add(2, queries.unsqueeze(-1).expand({b, h, clusters * w, dv}), routed);
  const at::Tensor count =
      at::zeros({b, h, n}, routed.options())
          .scatter_add_(2, queries, at::ones({b, h, clusters * w}, routed.options()));
  return sum / count.clamp_min(1).unsqueeze(-1);
}

at::Tensor routing_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::Tensor& centroids, int64_t w) {
  return routed_attention(q, k, v, centroid_similarity(unit_normalise(q), centroids),
                          centroid_similarity(unit_normalise(k), centroids), w);
}
}  // namespace functional

void RoutingOptions::check() const {
  host_.check("routing");
  TORCH_CHECK(clusters_ >= 1, "routing: clusters must be at least 1, got ", clusters_);
  TORCH_CHECK(window_ >= 0, "routing: window must be 0 (ceil(N / clusters)) or positive, got ",
              window_);
  TORCH_CHECK(commitment_weight_ >= 0, "routing: commitment_weight must not be negative, got ",
              commitment_weight_);
  TORCH_CHECK(decay_ >= 0 && decay_ < 1, "routing: decay must be in [0, 1), got ", decay_);
  TORCH_CHECK(init_iters_ >= 0, "routing: init_iters must be 0 or positive, got ", init_iters_);
}

RoutingImpl::RoutingImpl(const RoutingOptions& options_) : options(options_) {
  reset();
}

void RoutingImpl::reset() {
  options.check();
  reset_host(options.host());
  kmeans = register_module(
      "kmeans", OnlineKMeans(OnlineKMeansOptions(options.host().heads(), options.clusters(),
                                                 options.host().head_width())
                                 .decay(options.decay())
                                 .init_iters(options.init_iters())));
  aux_loss_ = at::Tensor();
}

int64_t RoutingImpl::window_for(int64_t n) const {
  const int64_t w =
      options.window() > 0 ? options.window() : (n + options.clusters() - 1) / options.clusters();
  return std::min(w, n);
}

at::Tensor RoutingImpl::attend(const at::Tensor& q_in, const at::Tensor& k_in,
                               const at::Tensor& v_in, const TokenGrid&) {
  // Routing takes the largest similarities: in bf16 near-equal ones swap and whole windows change,
  // so the core computes in float under any autocast.
  AutocastDisabled in_float;
  const at::Tensor q = q_in.to(at::kFloat), k = k_in.to(at::kFloat), v = v_in.to(at::kFloat);
  const int64_t n = q.size(2);
  const at::Tensor routed =
      at::cat({functional::unit_normalise(q), functional::unit_normalise(k)}, 2);  // [B, h, 2N, d]
  auto [similarity, nearest] = kmeans->assign(routed);
  if (is_training()) {
    aux_loss_ = kmeans->commitment(routed, nearest) * options.commitment_weight();
    kmeans->update(routed, nearest);
  } else {
    aux_loss_ = at::Tensor();
  }
  return functional::routed_attention(q, k, v, similarity.narrow(2, 0, n),
                                      similarity.narrow(2, n, n), window_for(n));
}

int64_t RoutingImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width(), c = options.clusters(),
                w = window_for(n);
  return b * h *
         (2 * n * c * d + 2 * c * w * w * d);  // similarities of 2N vectors; QKᵀ and AV per window
}

}  // namespace attnseg
