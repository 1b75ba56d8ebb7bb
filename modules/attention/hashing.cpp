#include "attention/hashing.h"

#include <ATen/ATen.h>

#include <vector>

namespace attnseg::functional {

namespace {
c10::optional<at::Generator> generator_or_default(const at::Generator& generator) {
  return generator.defined() ? c10::optional<at::Generator>(generator)
                             : c10::optional<at::Generator>();
}
}  // namespace

at::Tensor random_rotations(int64_t dim, int64_t rounds, int64_t n_buckets,
                            at::Generator generator) {
  TORCH_CHECK(n_buckets >= 2 && n_buckets % 2 == 0,
              "angular LSH needs an even number of buckets, got ", n_buckets);
  return at::randn({dim, rounds, n_buckets / 2}, generator_or_default(generator), at::kFloat);
}

at::Tensor angular_buckets(const at::Tensor& x, const at::Tensor& rotations) {
  const int64_t d = rotations.size(0), rounds = rotations.size(1), half = rotations.size(2);
  // [..., N, rounds·half] → [..., rounds, N, half]
  at::Tensor rotated = at::matmul(x, rotations.reshape({d, rounds * half}).to(x.scalar_type()));
  rotated = rotated.unflatten(-1, {rounds, half}).transpose(-3, -2);
  return at::cat({rotated, rotated.neg()}, -1).argmax(-1);
}

std::pair<at::Tensor, at::Tensor> sort_by_bucket(const at::Tensor& buckets) {
  const int64_t n = buckets.size(-1);
  // Positions break ties, so the keys are distinct and any sort is stable.
  const at::Tensor key = buckets * n + at::arange(n, buckets.options());
  const at::Tensor order = std::get<1>(key.sort(-1));
  const at::Tensor inverse =
      at::empty_like(order).scatter_(-1, order, at::arange(n, order.options()).expand_as(order));
  return {order, inverse};
}

at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& index) {
  std::vector<int64_t> sizes = index.sizes().vec();
  sizes.push_back(x.size(-1));
  return x.gather(-2, index.unsqueeze(-1).expand(sizes));
}

at::Tensor look_one_back(const at::Tensor& chunks, int64_t dim) {
  const int64_t c = chunks.size(dim);
  const at::Tensor previous =
      at::cat({chunks.narrow(dim, c - 1, 1), chunks.narrow(dim, 0, c - 1)}, dim);
  return at::cat({chunks, previous}, dim + 1);
}

at::Tensor random_hyperplanes(int64_t bits, int64_t dim, bool bias, at::Generator generator) {
  at::Tensor planes = at::randn({bits, dim + 1}, generator_or_default(generator), at::kFloat);
  if (!bias) planes.select(1, dim).zero_();
  return planes;
}

at::Tensor hyperplane_bits(const at::Tensor& x, const at::Tensor& planes) {
  const int64_t d = x.size(-1);
  const at::Tensor p = planes.to(x.scalar_type());
  return (at::matmul(x, p.narrow(1, 0, d).t()) > p.select(1, d)).to(x.scalar_type());
}

at::Tensor hamming_kmeans(const at::Tensor& codes, int64_t clusters, int64_t iterations) {
  const int64_t n = codes.size(-2);
  const at::Tensor start =
      at::div(at::arange(clusters, codes.options().dtype(at::kLong)) * n, clusters, "floor");
  at::Tensor centroids = codes.index_select(-2, start);  // [..., C, bits]
  // ‖b − c‖₁ of 0/1 vectors is |b| + |c| − 2 b·c; |b| is the same for every centroid.
  auto assign = [&] {
    return (centroids.sum(-1).unsqueeze(-2) - 2 * at::matmul(codes, centroids.transpose(-2, -1)))
        .argmin(-1);
  };
  for (int64_t i = 1; i < iterations; ++i) {
    const at::Tensor assignment = assign();
    std::vector<int64_t> count_size = assignment.sizes().vec();
    count_size.back() = clusters;
    const at::Tensor members =
        at::zeros(count_size, codes.options())
            .scatter_add_(-1, assignment, at::ones_like(codes.select(-1, 0)));
    std::vector<int64_t> ones_size = centroids.sizes().vec();
    const at::Tensor ones = at::zeros(ones_size, codes.options())
                                .scatter_add_(-2, assignment.unsqueeze(-1).expand_as(codes), codes);
    const at::Tensor majority = (2 * ones > members.unsqueeze(-1)).to(codes.scalar_type());
    centroids = at::where(members.unsqueeze(-1) > 0, majority, centroids);
  }
  return assign();
}

}  // namespace attnseg::functional
