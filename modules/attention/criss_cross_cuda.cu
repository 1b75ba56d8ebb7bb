// The fused criss-cross kernels: one thread per index, each running the function of
// criss_cross_kernel.h that the host runs in its loops (so the CPU tests check their
// arithmetic). Threads of a warp are neighbours along a row: their column reads are coalesced,
// their row reads are one address (a broadcast).
#include "attention/criss_cross_cuda.h"

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "attention/criss_cross_kernel.h"

namespace attnseg::criss_cross::gpu {
namespace {

constexpr int kThreads = 256;

template <typename acc_t, typename scalar_t>
__global__ void softmax_of_dots_kernel(int64_t count, const scalar_t* a, const scalar_t* b, int64_t ch, Map m,
                                       acc_t* weights) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) criss_cross::softmax_of_dots<acc_t>(i, a, b, ch, m, weights);
}

template <typename acc_t, typename scalar_t>
__global__ void softmax_backward_of_dots_kernel(int64_t count, const scalar_t* g, const scalar_t* v, int64_t ch, Map m,
                                                const acc_t* weights, acc_t* grad) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) criss_cross::softmax_backward_of_dots<acc_t>(i, g, v, ch, m, weights, grad);
}

template <typename acc_t, typename scalar_t>
__global__ void aggregate_kernel(int64_t count, const acc_t* weights, const scalar_t* src, int64_t ch, Map m,
                                 scalar_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) criss_cross::aggregate(i, weights, src, ch, m, out);
}

template <typename acc_t, typename scalar_t>
__global__ void aggregate_transposed_kernel(int64_t count, const acc_t* weights, const scalar_t* src, int64_t ch, Map m,
                                            scalar_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) criss_cross::aggregate_transposed(i, weights, src, ch, m, out);
}

Map map_of(const at::Tensor& t) { return Map{t.size(0), t.size(2), t.size(3)}; }

unsigned blocks_for(int64_t count) { return static_cast<unsigned>((count + kThreads - 1) / kThreads); }

}  // namespace

// Each launcher: the tensors' device current, the current stream, no launch for an empty map.
#define ATTNSEG_CC_DISPATCH(tensor, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, (tensor).scalar_type(), "criss_cross_fused", __VA_ARGS__)

void softmax_of_dots(const at::Tensor& a, const at::Tensor& b, const at::Tensor& weights) {
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t count = a.size(0) * a.size(2) * a.size(3);
  if (count == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  ATTNSEG_CC_DISPATCH(a, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    softmax_of_dots_kernel<acc_t><<<blocks_for(count), kThreads, 0, stream>>>(
        count, a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), a.size(1), map_of(a), weights.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void softmax_backward_of_dots(const at::Tensor& g, const at::Tensor& v, const at::Tensor& weights,
                              const at::Tensor& grad) {
  const c10::cuda::CUDAGuard guard(g.device());
  const int64_t count = g.size(0) * g.size(2) * g.size(3);
  if (count == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  ATTNSEG_CC_DISPATCH(g, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    softmax_backward_of_dots_kernel<acc_t><<<blocks_for(count), kThreads, 0, stream>>>(
        count, g.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), g.size(1), map_of(g), weights.data_ptr<acc_t>(),
        grad.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void aggregate(const at::Tensor& weights, const at::Tensor& src, const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(src.device());
  const int64_t count = src.numel();
  if (count == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  ATTNSEG_CC_DISPATCH(src, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    aggregate_kernel<acc_t><<<blocks_for(count), kThreads, 0, stream>>>(
        count, weights.data_ptr<acc_t>(), src.data_ptr<scalar_t>(), src.size(1), map_of(src), out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void aggregate_transposed(const at::Tensor& weights, const at::Tensor& src, const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(src.device());
  const int64_t count = src.numel();
  if (count == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  ATTNSEG_CC_DISPATCH(src, [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    aggregate_transposed_kernel<acc_t><<<blocks_for(count), kThreads, 0, stream>>>(
        count, weights.data_ptr<acc_t>(), src.data_ptr<scalar_t>(), src.size(1), map_of(src), out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace attnseg::criss_cross::gpu
