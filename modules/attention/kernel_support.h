// What the hand-written kernels share: the qualifier that makes one function both a CUDA
// thread's body and a host loop's (so the CPU tests check the arithmetic the GPU runs), and
// where this build runs them.
#pragma once

#include <c10/core/Device.h>

#if defined(__CUDACC__)
#define ATTNSEG_HOST_DEVICE __host__ __device__
#else
#define ATTNSEG_HOST_DEVICE
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

}  // namespace attnseg
