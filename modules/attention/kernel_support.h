// What the hand-written kernels share: the qualifier that makes one function both a CUDA
// thread's body and a host loop's (so the CPU tests check the arithmetic the GPU runs), and
// where this build runs them.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

#if defined(__CUDACC__)
#define ATTNSEG_HOST_DEVICE __host__ __device__
#else
#define ATTNSEG_HOST_DEVICE
#include <ATen/Parallel.h>
#endif

namespace attnseg {

// Whether this build's kernels run on `device`: the host always (loops over the per-thread
// functions); a CUDA device in a build with ATTNSEG_WITH_CUDA.
inline bool kernels_run_on(const c10::Device& device) {
#ifdef ATTNSEG_WITH_CUDA
  if (device.is_cuda()) return true;
#endif
  return device.is_cpu();
}

#if !defined(__CUDACC__)
// f(i) for every i in [0, count), on the host's threads in chunks of at least `grain`: the
// loop a kernel launch runs, one thread per index.
template <typename F>
void each_index(int64_t count, int64_t grain, const F& f) {
  at::parallel_for(0, count, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) f(i);
  });
}
#endif

}  // namespace attnseg
