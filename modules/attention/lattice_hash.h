// The permutohedral lattice's vertex table from a hash table that every row fills at once
// (lattice_hash_kernel.h): CUDA kernels on a GPU (lattice_hash_cuda.cu, built with
// ATTNSEG_WITH_CUDA), the same per-thread code in parallel loops on the host. It stands in for
// the sorts (unique_dim) that the lattice's tensor form builds its table with.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace attnseg::lattice_hash {

struct Table {
  at::Tensor rows;  // [M, width] int64: the distinct rows, in no particular order
  at::Tensor ids;   // [R] int64: each input row's index among them
  // Per lattice direction (width − 1 of them, the first column being the sample), [2, M+1]
  // int64: each vertex's neighbour at + and − the step (±d in that coordinate, ∓1 in the
  // others), M where it is not in the table; column M (a zero row of a value grid) points at M.
  std::vector<at::Tensor> neighbours;
};

// rows: [R, 1 + d] int64 (the sample, then a vertex's first d coordinates), on a device where
// this build's kernels run (kernels_run_on). `capacity`: the
// table's slots, a power of two above R (0: the smallest at least 2R, at most half full).
Table build(const at::Tensor& rows, int64_t capacity = 0);

}  // namespace attnseg::lattice_hash
