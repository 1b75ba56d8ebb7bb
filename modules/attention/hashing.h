// Locality-sensitive hashing for the sequence blocks that group tokens before attending
// (reformer, clustered). Two families: angular LSH by random rotations (Andoni et al.,
// "Practical and Optimal LSH for Angular Distance", arXiv:1509.02897, as Reformer uses it:
// bucket = argmax([xR; −xR]), so vectors at a small angle share a bucket more often), and
// Hamming bits from random hyperplanes (x·p > o, as fast-transformers' compute_hashes),
// grouped by Lloyd's k-means in Hamming space. Also the sorting, gathering and chunking a
// bucketed core needs. Everything here works on the last two dimensions [..., N, d].
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <utility>

namespace attnseg::functional {

// Gaussian rotations for angular LSH: [d, rounds, n_buckets / 2] (n_buckets even), drawn from
// `generator` (the global one when undefined).
at::Tensor random_rotations(int64_t dim, int64_t rounds, int64_t n_buckets,
                            at::Generator generator = {});

// bucket_r(x) = argmax([x R_r; −x R_r]) ∈ [0, n_buckets) for each round r. x: [..., N, d];
// rotations: [d, rounds, n_buckets / 2] → [..., rounds, N] long.
at::Tensor angular_buckets(const at::Tensor& x, const at::Tensor& rotations);

// The permutation that orders tokens by (bucket, position) and its inverse (sorted[inverse] =
// original). buckets: [..., N] long → (order, inverse), both [..., N] long.
std::pair<at::Tensor, at::Tensor> sort_by_bucket(const at::Tensor& buckets);

// x[..., index[...], :]: x [..., N, d], index [..., M] long → [..., M, d].
at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& index);

// Each chunk followed by the chunk before it (the first by the last): [..., C, L, ...] along
// dimension `dim` (the chunk dimension, L right after it) → [..., C, 2L, ...].
at::Tensor look_one_back(const at::Tensor& chunks, int64_t dim);

// Random hyperplanes with offsets for Hamming LSH: [bits, d + 1], the last column the offset
// (zero without `bias`: then the bits see only angles).
at::Tensor random_hyperplanes(int64_t bits, int64_t dim, bool bias, at::Generator generator = {});

// bit_b(x) = [x·p_b > o_b] as 0/1 (fast-transformers' compute_hashes: the offset is compared,
// not added) in x's floating type. x: [..., N, d]; planes:
// [bits, d + 1] → [..., N, bits].
at::Tensor hyperplane_bits(const at::Tensor& x, const at::Tensor& planes);

// Lloyd's k-means in Hamming space, as fast-transformers' cluster(): centroids start at
// `clusters` of the codes (evenly spaced along the sequence, where fast-transformers takes the
// first ones: the first tokens of a map are one row, often alike), then `iterations` − 1
// rounds of (assign each code to the nearest centroid, ties to the lowest index; set each
// centroid bit to its members' majority, ties to 0; an empty cluster keeps its centroid) and a
// final assignment. codes: [..., N, bits] 0/1 floats → [..., N] long in [0, clusters).
at::Tensor hamming_kmeans(const at::Tensor& codes, int64_t clusters, int64_t iterations);

}  // namespace attnseg::functional
