#include "attention/clustered.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "attention/functional.h"
#include "attention/hashing.h"
#include "core/device.h"

namespace attnseg {

namespace functional {
namespace {
// The mean query of each cluster: [B, h, C, d] (empty clusters zero).
at::Tensor cluster_means(const at::Tensor& q, const at::Tensor& cluster, int64_t clusters) {
  const int64_t b = q.size(0), h = q.size(1), d = q.size(3);
  const at::Tensor sums = at::zeros({b, h, clusters, d}, q.options())
                              .scatter_add(2, cluster.unsqueeze(-1).expand_as(q), q);
  const at::Tensor counts = at::zeros({b, h, clusters}, q.options())
                                .scatter_add(2, cluster, at::ones_like(cluster, q.options()));
  return sums / counts.clamp_min(1).unsqueeze(-1);
}
}  // namespace

at::Tensor clustered_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& cluster, int64_t clusters) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const at::Tensor weights =
      at::softmax(at::matmul(cluster_means(q, cluster, clusters), k.transpose(-2, -1)) * scale, -1);
  return gather_tokens(at::matmul(weights, v), cluster);  // [B, h, C, dv] → each member
}

at::Tensor improved_clustered_attention(const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const at::Tensor& cluster,
                                        int64_t clusters, int64_t topk) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3), dv = v.size(3);
  const int64_t kk = std::min(topk, k.size(2));
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const at::Tensor dots =
      at::matmul(cluster_means(q, cluster, clusters), k.transpose(-2, -1)) * scale;  // [B,h,C,S]
  const at::Tensor centroid = at::softmax(dots, -1);
  const at::Tensor top = std::get<1>(dots.topk(kk, -1));     // [B, h, C, k]
  const at::Tensor mass = centroid.gather(-1, top).sum(-1);  // [B, h, C]
  // The centroid's attention to the keys outside its top k, for every member.
  const at::Tensor rest = gather_tokens(at::matmul(centroid.scatter(-1, top, 0.0), v), cluster);
  // Each query's own scores on its cluster's top-k keys.
  const at::Tensor keys_of = gather_tokens(top, cluster).reshape({b, h, n * kk});  // [B, h, N·k]
  const at::Tensor top_k = gather_tokens(k, keys_of).view({b, h, n, kk, d});
  const at::Tensor top_v = gather_tokens(v, keys_of).view({b, h, n, kk, dv});
  const at::Tensor exact =
      at::softmax(at::matmul(q.unsqueeze(-2), top_k.transpose(-2, -1)) * scale, -1);  // [..,1,k]
  const at::Tensor scaled = exact * mass.gather(-1, cluster).view({b, h, n, 1, 1});
  return at::matmul(scaled, top_v).squeeze(-2) + rest;
}
}  // namespace functional

void ClusteredOptions::check() const {
  host_.check("clustered");
  TORCH_CHECK(clusters_ >= 1, "clustered: clusters must be at least 1, got ", clusters_);
  TORCH_CHECK(iterations_ >= 1, "clustered: iterations must be at least 1, got ", iterations_);
  TORCH_CHECK(bits_ >= 1 && bits_ <= 64, "clustered: bits must be between 1 and 64, got ", bits_);
  TORCH_CHECK(topk_ >= 1, "clustered: topk must be at least 1, got ", topk_);
}

ClusteredImpl::ClusteredImpl(const ClusteredOptions& options_) : options(options_) {
  reset();
}

void ClusteredImpl::reset() {
  options.check();
  reset_host(options.host());
  planes_ = register_buffer(
      "planes", functional::random_hyperplanes(options.bits(), options.host().head_width(),
                                               options.hash_bias()));
}

at::Tensor ClusteredImpl::cluster(const at::Tensor& q) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2);
  if (options.clusters() >= n) return at::arange(n, q.options().dtype(at::kLong)).expand({b, h, n});
  const at::Tensor planes =
      is_training() && options.redraw()
          ? functional::random_hyperplanes(options.bits(), q.size(3), options.hash_bias())
                .to(q.device())
          : planes_;
  return functional::hamming_kmeans(functional::hyperplane_bits(q, planes), options.clusters(),
                                    options.iterations());
}

at::Tensor ClusteredImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const TokenGrid&) {
  // The host projects queries and keys in float (float_queries_keys); the values may come in
  // bf16 under autocast: hashing and softmax stay in float.
  AutocastDisabled in_float;
  const at::Tensor qf = functional::at_least_float(q), kf = functional::at_least_float(k),
                   vf = functional::at_least_float(v);
  const at::Tensor assignment = cluster(qf.detach());
  const int64_t clusters = std::min(options.clusters(), q.size(2));
  const at::Tensor out = options.improved()
                             ? functional::improved_clustered_attention(qf, kf, vf, assignment,
                                                                        clusters, options.topk())
                             : functional::clustered_attention(qf, kf, vf, assignment, clusters);
  return out.to(v.scalar_type());
}

int64_t ClusteredImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width();
  const int64_t c = std::min(options.clusters(), n), topk = std::min(options.topk(), n);
  // hashing (n·d·bits) and the Hamming distances of each k-means assignment (n·bits·C), unless
  // every query is its own cluster
  const int64_t clustering =
      options.clusters() >= n ? 0 : n * options.bits() * (d + options.iterations() * c);
  // the centroids' scores and weighted sum (C·n·2d), and in the improved form each query's
  // scores and weighted sum over its top-k keys (n·k·2d)
  const int64_t attention = c * n * 2 * d + (options.improved() ? n * topk * 2 * d : 0);
  return b * h * (clustering + attention);
}

}  // namespace attnseg
