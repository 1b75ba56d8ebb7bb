// Online spherical k-means for content-based sparse attention, as the Routing Transformer uses it
// (Roy et al., "Efficient Content-Based Sparse Attention with Routing Transformers",
// arXiv:2003.05997; lucidrains/routing-transformer's Kmeans): vectors are unit-normalised, each
// is assigned to the centroid of largest dot product (the nearest, since the centroids are kept
// on the unit sphere too), and the centroids follow an exponential moving average of the
// normalised means of the vectors assigned to them. Routing then gives every cluster a window of
// the w vectors nearest its centroid (top-w per centroid), so clusters have equal sizes whatever
// the assignment.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <tuple>

namespace attnseg {

namespace functional {
// x / ‖x‖ over the last dimension (zero vectors stay zero).
at::Tensor unit_normalise(const at::Tensor& x);
// s[b, h, n, c] = x[b, h, n]·μ[h, c]: x [B, h, N, d], centroids [h, k, d] → [B, h, N, k].
at::Tensor centroid_similarity(const at::Tensor& x, const at::Tensor& centroids);
// μ'_c = normalise(Σ_{b, n: a = c} x[b, h, n]) per head, μ_c where no vector is assigned to c.
// x [B, h, N, d] (unit rows), assignment [B, h, N] long, centroids [h, k, d] → [h, k, d].
at::Tensor cluster_means(const at::Tensor& x, const at::Tensor& assignment,
                         const at::Tensor& centroids);
// The w tokens of largest similarity to each centroid, in increasing token order:
// similarity [B, h, N, k] → indices [B, h, k, w] (w ≤ N).
at::Tensor top_w_per_cluster(const at::Tensor& similarity, int64_t w);
}  // namespace functional

struct OnlineKMeansOptions {
  OnlineKMeansOptions(int64_t heads, int64_t clusters, int64_t dim)
      : heads_(heads), clusters_(clusters), dim_(dim) {}
  TORCH_ARG(int64_t, heads);
  TORCH_ARG(int64_t, clusters);
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(double, decay) = 0.999;  // lucidrains' kmeans_ema_decay
  TORCH_ARG(int64_t,
            init_iters) = 10;  // Lloyd iterations on the first training batch (0: keep random)
};

// The centroids as buffers ([heads, clusters, dim], saved in checkpoints) and the flag that says
// whether they were initialised from data. Only `update` changes them, and its callers call it
// in training mode only.
class OnlineKMeansImpl : public torch::nn::Module {
 public:
  explicit OnlineKMeansImpl(const OnlineKMeansOptions& options);
  void reset();
  // x: unit rows [B, h, N, d] → (similarity [B, h, N, k], nearest centroid [B, h, N]), no gradient.
  std::tuple<at::Tensor, at::Tensor> assign(const at::Tensor& x) const;
  // mean over elements of (x − μ_{a(x)})², the centroids detached: pulls x toward its centroid.
  at::Tensor commitment(const at::Tensor& x, const at::Tensor& assignment) const;
  // On the first call (when init_iters > 0): centroids drawn from x and refined by Lloyd
  // iterations; on every call: μ ← normalise(decay·μ + (1 − decay)·cluster_means(x)).
  void update(const at::Tensor& x, const at::Tensor& assignment);
  const at::Tensor& centroids() const { return centroids_; }

  OnlineKMeansOptions options;

 private:
  at::Tensor centroids_;    // [heads, clusters, dim]
  at::Tensor initialised_;  // [1] bool
};
TORCH_MODULE(OnlineKMeans);

}  // namespace attnseg
