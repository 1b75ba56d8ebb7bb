// Parameter-free cores of the attention blocks, like torch::nn::functional: tensors in,
// tensors out, no weights, so each can be checked against a float64 reference.
#pragma once

#include <ATen/core/Tensor.h>

namespace attnseg::functional {

// `t` in float when it is in a type narrower than float (bf16, half), else as it is: the cores
// that hash, sort, pick maxima or sum exponentials compute in at least float, and a float64
// model stays float64 (the reference the tests compare a device against).
inline at::Tensor at_least_float(const at::Tensor& t) { return t.to(at::promote_types(t.scalar_type(), at::kFloat)); }

// out[:, :, i] = Σ_j softmax_j(q_i · k_j / √D) v[:, :, j], over all N = H·W positions.
// q, k: [B, D, H, W]; v: [B, C, H, W] → [B, C, H, W].
at::Tensor nonlocal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// out[:, :, y, x] = Σ_{(y',x') ∈ row y ∪ column x} softmax(q_yx · k_y'x') v[:, :, y', x'],
// one softmax over the H+W−1 positions of the criss-cross (the centre counted once).
// q, k: [B, D, H, W]; v: [B, C, H, W] → [B, C, H, W].
at::Tensor criss_cross_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The same attention from the fused kernels (criss_cross_fused.h): the weights are computed and
// normalised in one pass and kept once, [B, H+W, H, W] in float (double for double inputs),
// instead of the energies, their concatenation and the softmax; half and bfloat16 inputs
// accumulate in float. CUDA kernels on a GPU (in a build with ATTNSEG_WITH_CUDA), the same
// per-thread code in parallel loops on the CPU.
at::Tensor criss_cross_attention_fused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

}  // namespace attnseg::functional
