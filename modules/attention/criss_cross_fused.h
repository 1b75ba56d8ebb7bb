// The fused criss-cross attention (energies, softmax and aggregation without the unfused path's
// intermediate copies): an autograd operation whose forward and backward run the per-thread
// functions of criss_cross_kernel.h, as CUDA kernels on a GPU (criss_cross_cuda.cu) and as
// parallel loops on the host. functional::criss_cross_attention_fused is its checked entry.
#pragma once

#include <ATen/core/Tensor.h>

namespace attnseg::criss_cross {

// q, k [B, D, H, W] and v [B, C, H, W] of one floating type on one device where this build's
// kernels run (kernels_run_on; shapes checked by the caller) → [B, C, H, W], differentiable in
// q, k and v.
at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

}  // namespace attnseg::criss_cross
