// SCRAM: Spatially Coherent Randomized Attention Maps (Calian et al., arXiv:1905.10308).
// Each query attends only to k keys found by PatchMatch (Barnes et al. 2009) instead of all
// N: random initial candidates, then iterations of propagation (a neighbour's candidates,
// shifted by the offset to that neighbour, are tried: spatially coherent images have
// coherent matches) and random search around each current candidate in windows halving from
// the image size down to one pixel, keeping the k distinct keys of highest q·k. The search is
// not differentiable (it picks indices); the softmax attention over the keys found is, with
// respect to q, k and v. Iterations run in parallel over pixels (each reads its neighbours'
// candidates from the previous iteration) and alternate the propagation direction (left/up,
// then right/down) as PatchMatch's scan orders do. The paper gives no public code.
// Around the core: q, k (C/8 wide, as ccnet) and v projections, and x + gamma·out with gamma
// starting at 0 as the other residual attention blocks (`zero_init`, on only with
// `model.attention.start: paper`).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "attention/block.h"

namespace attnseg {

namespace functional {
// PatchMatch search for the `topk` keys of highest q_i·k_j per query: q, k [B, D, H, W] →
// int64 indices [B, N, topk] into the N = H·W positions (distinct per query, best first).
// A CPU kernel: q and k on another device are copied to the host.
at::Tensor patchmatch_topk(const at::Tensor& q, const at::Tensor& k, int64_t topk, int64_t iterations, uint64_t seed);
// The same search from tensor operations, on the device where q and k lie, with the same
// contract (indices on that device) and another random stream: per iteration each pixel's
// candidates (held, propagated, random) form one [B, N, M] tensor, scored by a gather of keys
// in float, duplicates dropped, the best k kept.
at::Tensor patchmatch_topk_tensor(const at::Tensor& q, const at::Tensor& k, int64_t topk,
                                  int64_t iterations, uint64_t seed);
// out_i = Σ_{j ∈ S_i} softmax_j(q_i·k_j/√D) v_j over the keys S_i = indices[b, i, :]; q, k
// [B, D, H, W], v [B, C, H, W]. On the CPU one pass per query reads its k keys and values
// where they lie (an autograd function whose backward scatters the same way); elsewhere it is
// sparse_attention_gathered.
at::Tensor sparse_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& indices);
// The same from tensor operations: every query's k keys and values gathered into [B, N, k, C]
// (k times the memory of the map), differentiable by autograd on any device.
at::Tensor sparse_attention_gathered(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& indices);
}  // namespace functional

struct ScramOptions {
  explicit ScramOptions(int64_t channels) : channels_(channels) {}
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, topk) = 16;
  TORCH_ARG(int64_t, iterations) = 4;
  TORCH_ARG(int64_t, reduction) = 8;
  TORCH_ARG(bool, zero_init) = true;  // gamma starts at 0 (the identity), else at 1
  // Seed of the search in eval mode, so inference is a function of the input alone; training
  // draws each search's seed from torch's global generator.
  TORCH_ARG(int64_t, eval_seed) = 0;

 public:
  template <typename Field>
  void fields(Field&& field) {
    field("topk", topk_);
    field("iterations", iterations_);
    field("reduction", reduction_);
    field("eval_seed", eval_seed_);
  }
  void check() const;
};

class ScramImpl : public AttentionBlockImpl {
 public:
  explicit ScramImpl(const ScramOptions& options);
  void reset();
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t macs(const std::vector<int64_t>& shape) const override;

  ScramOptions options;
  torch::Tensor gamma;

 private:
  torch::nn::Conv2d query_{nullptr}, key_{nullptr}, value_{nullptr};
};
TORCH_MODULE(Scram);

// Candidate evaluations (each one q·k product) of one query's search.
int64_t patchmatch_evaluations(int64_t h, int64_t w, int64_t topk, int64_t iterations);

}  // namespace attnseg
