// The fused criss-cross kernels on a CUDA device (criss_cross_cuda.cu, built with
// ATTNSEG_WITH_CUDA): each launches one thread per index of the matching function of
// criss_cross_kernel.h. Inputs contiguous, of one type, on the current device's tensors; the
// caller allocates the outputs (weights and energy gradients in float, or double for double
// inputs; the rest in the inputs' type).
#pragma once

#include <ATen/core/Tensor.h>

namespace attnseg::criss_cross::gpu {

void softmax_of_dots(const at::Tensor& a, const at::Tensor& b, const at::Tensor& weights);
void softmax_backward_of_dots(const at::Tensor& g, const at::Tensor& v, const at::Tensor& weights,
                              const at::Tensor& grad);
void aggregate(const at::Tensor& weights, const at::Tensor& src, const at::Tensor& out);
void aggregate_transposed(const at::Tensor& weights, const at::Tensor& src, const at::Tensor& out);

}  // namespace attnseg::criss_cross::gpu
