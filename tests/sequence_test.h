// What the sequence blocks' test files share: the relative error of an output against its
// reference, the multiply-adds a piece of code executes (as the benchmark counts them), and a
// grid of a map in raster order for calling a core's attend() directly.
#pragma once

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "attention/sequence.h"
#include "engine/counters.h"

namespace attnseg::test {

inline double relative_error(const at::Tensor& out, const at::Tensor& ref) {
  return ((out.to(at::kDouble) - ref.to(at::kDouble)).norm() / ref.to(at::kDouble).norm()).item<double>();
}

template <typename F>
int64_t counted_macs(F&& f) {
  MacCounter counter;
  torch::NoGradGuard no_grad;
  f();
  return counter.macs();
}

inline TokenGrid raster_grid(int64_t h, int64_t w) { return TokenGrid{h, w, TokenOrder::raster, {}, 0, {}}; }

}  // namespace attnseg::test
