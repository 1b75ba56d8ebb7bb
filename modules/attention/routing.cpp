#include "attention/routing.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "attention/functional.h"
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
  TORCH_CHECK(window_ >= 0,
              "routing: window must be 0 (ceil(map_size tokens / clusters)) or positive, got ", window_);
  TORCH_CHECK(local_heads_ >= -1 && local_head_count() < host_.heads(),
              "routing: local_heads must be -1 (half the heads) or from 0 to heads - 1 (at least one "
              "routing head), got ",
              local_heads_, " of ", host_.heads(), " heads");
  TORCH_CHECK(local_window_ >= 1 && local_window_ % 2 == 1,
              "routing: local_window must be odd and positive, got ", local_window_);
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
      "kmeans", OnlineKMeans(OnlineKMeansOptions(options.routing_head_count(), options.clusters(),
                                                 options.host().head_width())
                                 .decay(options.decay())
                                 .init_iters(options.init_iters())));
  aux_loss_ = at::Tensor();
}

int64_t RoutingImpl::window_for(int64_t n) const {
  const std::vector<int64_t>& trained = options.host().map_size();
  const int64_t tokens = trained[0] * trained[1];
  const int64_t w = options.window() > 0 ? options.window()
                                         : (tokens + options.clusters() - 1) / options.clusters();
  return std::min(w, n);
}

Pattern RoutingImpl::build_pattern(int64_t height, int64_t width) const {
  const int64_t r = options.local_window() / 2;
  return offset_pattern(height, width, window_offsets(r, r));
}

std::vector<int64_t> RoutingImpl::declared_support(int64_t height, int64_t width, int64_t) const {
  return every_pixel(height, width);
}

at::Tensor RoutingImpl::attend_raster(const at::Tensor& q_in, const at::Tensor& k_in,
                                      const at::Tensor& v_in, const TokenGrid& grid) {
  // Routing takes the largest similarities: in bf16 near-equal ones swap and whole windows change,
  // so the core computes in float under any autocast.
  AutocastDisabled in_float;
  const at::Tensor q = functional::at_least_float(q_in), k = functional::at_least_float(k_in),
                   v = functional::at_least_float(v_in);
  const int64_t n = q.size(2), local = options.local_head_count(),
                routed_heads = options.routing_head_count();
  const at::Tensor rq = q.narrow(1, local, routed_heads), rk = k.narrow(1, local, routed_heads),
                   rv = v.narrow(1, local, routed_heads);
  const at::Tensor routed =
      at::cat({functional::unit_normalise(rq), functional::unit_normalise(rk)}, 2);  // [B, r, 2N, d]
  auto [similarity, nearest] = kmeans->assign(routed);
  if (is_training()) {
    aux_loss_ = kmeans->commitment(routed, nearest) * options.commitment_weight();
    kmeans->update(routed, nearest);
  } else {
    aux_loss_ = at::Tensor();
  }
  const at::Tensor out = functional::routed_attention(rq, rk, rv, similarity.narrow(2, 0, n),
                                                      similarity.narrow(2, n, n), window_for(n));
  if (local == 0) return out;
  return at::cat({attend_pattern(q.narrow(1, 0, local), k.narrow(1, 0, local),
                                 v.narrow(1, 0, local), grid.height, grid.width),
                  out},
                 1);
}

int64_t RoutingImpl::core_macs_on(int64_t b, int64_t height, int64_t width) const {
  const int64_t n = height * width, d = options.host().head_width(), c = options.clusters(),
                w = window_for(n), local = options.local_head_count();
  // Similarities of the 2N routed vectors; QKᵀ and AV per window.
  const int64_t routing = b * options.routing_head_count() * (2 * n * c * d + 2 * c * w * w * d);
  return routing + (local == 0 ? 0 : functional::tiled_macs(tiled(height, width)[0], b, local, d));
}

}  // namespace attnseg
