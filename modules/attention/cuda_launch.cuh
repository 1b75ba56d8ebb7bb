// One thread per index: the launch every hand-written kernel of this project uses.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

namespace attnseg::cuda_launch {

constexpr int kThreads = 256;

// `kernel(count, args...)` over `count` threads, on the current stream of `like`'s device;
// nothing for none. Each kernel's thread i < count does index i.
template <typename... Params, typename... Args>
void launch(const at::Tensor& like, int64_t count, void (*kernel)(int64_t, Params...), Args... args) {
  const c10::cuda::CUDAGuard guard(like.device());
  if (count == 0) return;
  const auto blocks = static_cast<unsigned>((count + kThreads - 1) / kThreads);
  kernel<<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(count, args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// This thread's index.
__device__ inline int64_t thread_index() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }

}  // namespace attnseg::cuda_launch
