// The fused criss-cross kernels: one thread per index, each running the function of
// criss_cross_kernel.h that the host runs in its loops (so the CPU tests check their
// arithmetic). Threads of a warp are neighbours along a row: their column reads are coalesced,
// their row reads are one address (a broadcast).
#include "attention/criss_cross_cuda.h"

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>

#include "attention/criss_cross_kernel.h"
#include "attention/cuda_launch.cuh"

namespace attnseg::criss_cross::gpu {
namespace {

using cuda_launch::launch;
using cuda_launch::thread_index;

template <typename acc_t, typename scalar_t>
__global__ void softmax_of_dots_kernel(int64_t count, const scalar_t* a, const scalar_t* b, int64_t ch, Map m,
                                       acc_t* weights) {
  const int64_t i = thread_index();
  if (i < count) criss_cross::softmax_of_dots<acc_t>(i, a, b, ch, m, weights);
}

template <typename acc_t, typename scalar_t>
__global__ void softmax_backward_of_dots_kernel(int64_t count, const scalar_t* g, const scalar_t* v, int64_t ch, Map m,
                                                const acc_t* weights, acc_t* grad) {
  const int64_t i = thread_index();
  if (i < count) criss_cross::softmax_backward_of_dots<acc_t>(i, g, v, ch, m, weights, grad);
}

template <bool transposed, typename acc_t, typename scalar_t>
__global__ void aggregate_kernel(int64_t count, const acc_t* weights, const scalar_t* src, int64_t ch, Map m,
                                 scalar_t* out) {
  const int64_t i = thread_index();
  if (i >= count) return;
  if (transposed) {
    criss_cross::aggregate_transposed(i, weights, src, ch, m, out);
  } else {
    criss_cross::aggregate(i, weights, src, ch, m, out);
  }
}

template <bool transposed>
void aggregate_on_gpu(const at::Tensor& weights, const at::Tensor& src, const at::Tensor& out) {
  ATTNSEG_CC_DISPATCH(src, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    launch(src, src.numel(), aggregate_kernel<transposed, acc_t, scalar_t>, weights.data_ptr<acc_t>(),
           src.data_ptr<scalar_t>(), src.size(1), map_of(src), out.data_ptr<scalar_t>());
  });
}

}  // namespace

void softmax_of_dots(const at::Tensor& a, const at::Tensor& b, const at::Tensor& weights) {
  ATTNSEG_CC_DISPATCH(a, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    launch(a, a.size(0) * a.size(2) * a.size(3), softmax_of_dots_kernel<acc_t, scalar_t>, a.data_ptr<scalar_t>(),
           b.data_ptr<scalar_t>(), a.size(1), map_of(a), weights.data_ptr<acc_t>());
  });
}

void softmax_backward_of_dots(const at::Tensor& g, const at::Tensor& v, const at::Tensor& weights,
                              const at::Tensor& grad) {
  ATTNSEG_CC_DISPATCH(g, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    launch(g, g.size(0) * g.size(2) * g.size(3), softmax_backward_of_dots_kernel<acc_t, scalar_t>,
           g.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), g.size(1), map_of(g),
           weights.data_ptr<acc_t>(), grad.data_ptr<acc_t>());
  });
}

void aggregate(const at::Tensor& weights, const at::Tensor& src, const at::Tensor& out) {
  aggregate_on_gpu<false>(weights, src, out);
}

void aggregate_transposed(const at::Tensor& weights, const at::Tensor& src, const at::Tensor& out) {
  aggregate_on_gpu<true>(weights, src, out);
}

}  // namespace attnseg::criss_cross::gpu
