#include "attention/kmeans.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>

namespace attnseg {

namespace functional {
at::Tensor unit_normalise(const at::Tensor& x) {
  return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(1e-12);
}

at::Tensor centroid_similarity(const at::Tensor& x, const at::Tensor& centroids) {
  return at::matmul(x, centroids.transpose(-1, -2).to(x.scalar_type()));
}

at::Tensor cluster_means(const at::Tensor& x, const at::Tensor& assignment,
                         const at::Tensor& centroids) {
  const int64_t b = x.size(0), h = x.size(1), n = x.size(2), d = x.size(3), k = centroids.size(1);
  const at::Tensor sums = at::zeros({b, h, k, d}, x.options())
                              .scatter_add_(2, assignment.unsqueeze(-1).expand({b, h, n, d}), x)
                              .sum(0);  // [h, k, d]: the batch pools into one set of centroids
  const at::Tensor counts = at::zeros({b, h, k}, x.options())
                                .scatter_add_(2, assignment, at::ones({b, h, n}, x.options()))
                                .sum(0);  // [h, k]
  return at::where((counts > 0).unsqueeze(-1), unit_normalise(sums), centroids.to(x.scalar_type()));
}

at::Tensor top_w_per_cluster(const at::Tensor& similarity, int64_t w) {
  const at::Tensor nearest = std::get<1>(similarity.topk(w, /*dim=*/2));  // [B, h, w, k]
  return std::get<0>(nearest.sort(/*dim=*/2)).transpose(-1, -2).contiguous();
}
}  // namespace functional

OnlineKMeansImpl::OnlineKMeansImpl(const OnlineKMeansOptions& options_) : options(options_) {
  reset();
}

void OnlineKMeansImpl::reset() {
  TORCH_CHECK(options.heads() >= 1 && options.clusters() >= 1 && options.dim() >= 1,
              "k-means: heads, clusters and dim must be positive");
  TORCH_CHECK(options.decay() >= 0 && options.decay() < 1, "k-means: decay must be in [0, 1), got ",
              options.decay());
  TORCH_CHECK(options.init_iters() >= 0, "k-means: init_iters must be 0 or positive, got ",
              options.init_iters());
  centroids_ = register_buffer(
      "centroids", functional::unit_normalise(
                       torch::randn({options.heads(), options.clusters(), options.dim()})));
  initialised_ = register_buffer("initialised", torch::zeros({1}, at::kLong));
}

std::tuple<at::Tensor, at::Tensor> OnlineKMeansImpl::assign(const at::Tensor& x) const {
  torch::NoGradGuard no_grad;
  at::Tensor similarity = functional::centroid_similarity(x, centroids_);
  at::Tensor nearest = similarity.argmax(-1);
  return {std::move(similarity), std::move(nearest)};
}

at::Tensor OnlineKMeansImpl::commitment(const at::Tensor& x, const at::Tensor& assignment) const {
  const int64_t b = x.size(0), h = x.size(1), n = x.size(2), d = x.size(3);
  const at::Tensor routed = centroids_.detach()
                                .to(x.scalar_type())
                                .unsqueeze(0)
                                .expand({b, h, options.clusters(), d})
                                .gather(2, assignment.unsqueeze(-1).expand({b, h, n, d}));
  return (x - routed).pow(2).mean();
}

void OnlineKMeansImpl::update(const at::Tensor& x_in, const at::Tensor& assignment_in) {
  torch::NoGradGuard no_grad;
  const at::Tensor x = x_in.detach().to(centroids_.scalar_type());
  at::Tensor assignment = assignment_in;
  if (options.init_iters() > 0 && initialised_.item<int64_t>() == 0) {
    // lucidrains' init: centroids drawn from the first batch's vectors, then Lloyd iterations.
    const int64_t h = x.size(1), d = x.size(3), pool = x.size(0) * x.size(2);
    const at::Tensor vectors = x.transpose(0, 1).reshape({h, pool, d});
    const int64_t drawn = std::min(pool, options.clusters());
    const at::Tensor picks =
        at::randperm(pool, at::TensorOptions(at::kLong).device(x.device())).narrow(0, 0, drawn);
    at::Tensor centroids = centroids_.clone();
    centroids.narrow(1, 0, drawn).copy_(vectors.index_select(1, picks));
    for (int64_t i = 0; i < options.init_iters(); ++i) {
      centroids = functional::cluster_means(
          x, functional::centroid_similarity(x, centroids).argmax(-1), centroids);
    }
    centroids_.copy_(centroids);
    initialised_.fill_(1);
    assignment = std::get<1>(assign(x));
  }
  const at::Tensor means = functional::cluster_means(x, assignment, centroids_);
  // Renormalised so that the centroids stay on the sphere, where the largest dot product is the
  // nearest centroid.
  centroids_.copy_(
      functional::unit_normalise(centroids_ * options.decay() + means * (1 - options.decay())));
}

}  // namespace attnseg
