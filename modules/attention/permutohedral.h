// Permutohedral Attention Module for Efficient Non-Local Neural Networks (Joutard et al.,
// arXiv:1907.00641), on the lattice of "Fast High-Dimensional Filtering Using the
// Permutohedral Lattice" (Adams, Baek & Davis, 2010).
// Gaussian-kernel attention in a learned low-dimensional position space, in time linear in N:
// positions are elevated onto the d-dimensional permutohedral lattice, each key splats its
// value onto the d+1 vertices of its enclosing simplex with barycentric weights (a hash
// table holds only the vertices touched), the lattice is blurred with [1/2, 1, 1/2] along
// each of its d+1 directions, and each query slices the result back with its own barycentric
// weights. The gradient is lattice filtering too: with respect to values, the output gradient
// splatted at the queries, blurred in reverse order and sliced at the keys; with respect to
// positions, through the barycentric weights (the reference code's derivation), so it is the
// exact gradient of what the forward computes (filtering the Gaussian's own position gradient,
// Σ_j K_ij (k_j − q_i) v_j, would fail a finite-difference check by the lattice's error).
// The backward pass is not itself differentiable (no double backward).
// As the reference code (PAM/PAM.py): positions = LeakyReLU(1×1 conv of [x, coordinates ×
// learned per-axis scale]), values = 1×1 conv of x, `heads` splits each filtered on its own,
// queries = keys (one feature extractor), no residual and no zero-initialised layer, so the
// block does not start as the identity. Where we differ from that code, and why:
//  - each sample gets its own lattice; the reference hashes the whole batch into one table,
//    so a sample's blur can pass through vertices only another sample occupies;
//  - the output is normalised by the filtered homogeneous 1 (attention weights summing to 1,
//    as out_i = Σ_j K_ij v_j / Σ_j K_ij); the reference returns the unnormalised Σ_j K_ij v_j
//    (`normalize(false)` reproduces it), whose scale grows with the number of pixels;
//  - filter_dim defaults to 8 per head: the reference networks use channels/2 (8 or 9 for
//    their 16 and 18 channels), which at 512 channels would be a 256-dimensional lattice;
//  - queries and keys may differ (`shared_qk(false)` adds a query extractor): the queries'
//    simplex vertices are then hashed too, so the blur reaches them.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "attention/block.h"

namespace attnseg {

namespace functional {

// out_i = Σ_j K(q_i, k_j) v_j / Σ_j K(q_i, k_j), K ≈ exp(−‖q_i − k_j‖² / 2σ²) as the
// permutohedral lattice approximates it (without the division when !normalize; queries whose
// simplex the blur does not reach get 0). q: [B, D, *Q], k: [B, D, *K], v: [B, C, *K] →
// [B, C, *Q]; differentiable in q, k and v. CPU tensors run the hand-written kernel; tensors on
// any other device permutohedral_attention_hashed where the hash table's kernels run there
// (CUDA in a build with ATTNSEG_WITH_CUDA), else permutohedral_attention_tensor. bf16 and half
// inputs (autocast) are filtered in float, accumulating in fp32, and returned in their dtype.
at::Tensor permutohedral_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   double kernel_std = 1.0, bool normalize = true);

// The same lattice (the same vertices, weights, blur and normalisation, so the CPU kernel's
// output to rounding) from LibTorch tensor operations alone, for CUDA: sorted distinct rows of
// [sample, vertex coordinates] stand in for the hash table, and autograd derives the gradient,
// which is the one the CPU kernel's backward writes out. Runs on the CPU too, to compare.
at::Tensor permutohedral_attention_tensor(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, double kernel_std = 1.0,
                                          bool normalize = true);

// The tensor form with its vertex table built by the hash table's kernels (lattice_hash.h)
// instead of sorts: what CUDA tensors run in a build with ATTNSEG_WITH_CUDA. Runs on the CPU
// too (the same per-thread code in loops), to compare.
at::Tensor permutohedral_attention_hashed(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, double kernel_std = 1.0,
                                          bool normalize = true);

// The occupied vertices permutohedral_attention_tensor builds: sorted distinct int64 rows
// [sample, first D lattice coordinates], at most D+1 per distinct position of a sample.
at::Tensor permutohedral_vertices(const at::Tensor& q, const at::Tensor& k,
                                  double kernel_std = 1.0);

// What one permutohedral_attention call does, from building the same lattices: the work
// grows with the occupied vertices, at most (D+1) per distinct position, never with N².
struct PermutohedralWork {
  int64_t vertices = 0;  // occupied lattice vertices, summed over the batch
  int64_t lookups = 0;   // hash-table lookups (vertex insertions and blur neighbours)
  int64_t probes = 0;    // slots visited by those lookups
  int64_t products = 0;  // multiply-adds with values: splat, blur and slice
};
PermutohedralWork permutohedral_work(const at::Tensor& q, const at::Tensor& k,
                                     int64_t value_channels, double kernel_std = 1.0);

}  // namespace functional

struct PermutohedralOptions {
  explicit PermutohedralOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  // Position dimension d per head (the lattice dimension; cost grows as (d+1)²).
  TORCH_ARG(int64_t, filter_dim) = 8;
  // The reference's n_split: each head filters channels/heads values with its own positions.
  TORCH_ARG(int64_t, heads) = 2;
  // σ of the Gaussian kernel, in units of the position features (the reference fixes 1).
  TORCH_ARG(double, kernel_std) = 1.0;
  TORCH_ARG(bool, normalize) = true;
  TORCH_ARG(bool, shared_qk) = true;
  // Of the LeakyReLU after the position extractor (torch's default, as the reference).
  TORCH_ARG(double, negative_slope) = 0.01;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("filter_dim", filter_dim_);
    field("heads", heads_);
    field("kernel_std", kernel_std_);
    field("normalize", normalize_);
    field("shared_qk", shared_qk_);
  }
  void check() const;
};

class PermutohedralImpl : public AttentionBlockImpl {
 public:
  explicit PermutohedralImpl(const PermutohedralOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  // Exact when every position occupies d+1 vertices of its own (the worst case); fewer
  // occupied vertices mean less blur work. Lattice construction (elevation, sorting,
  // hashing: O(d²) per position, no products with values) is not counted.
  int64_t macs(const std::vector<int64_t>& shape) const override;

  PermutohedralOptions options;
  torch::Tensor coord_scale;  // [1, 2, 1, 1]: learned scale of the (row, column) coordinates

 private:
  torch::Tensor positions(torch::nn::Conv2d extractor, const torch::Tensor& input);
  torch::nn::Conv2d feature_{nullptr}, query_{nullptr}, descriptor_{nullptr};
};
TORCH_MODULE(Permutohedral);

}  // namespace attnseg
