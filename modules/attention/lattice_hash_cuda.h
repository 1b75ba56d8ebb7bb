// The lattice hash table's kernels on a CUDA device (lattice_hash_cuda.cu, built with
// ATTNSEG_WITH_CUDA): one thread per row, then one per vertex, direction and side, each running
// the function of lattice_hash_kernel.h. Tensors contiguous int64 on one device.
#pragma once

#include <ATen/core/Tensor.h>

namespace attnseg::lattice_hash::gpu {

// slot_of[r] = insert_row(r, rows, ...) for every row; slots (a power of two of them) start at −1.
void insert_rows(const at::Tensor& rows, const at::Tensor& slots, const at::Tensor& slot_of);
// found[i] = find_neighbour(i, table, ...) for i < (d+1) · 2 · M.
void find_neighbours(const at::Tensor& table, const at::Tensor& rows, const at::Tensor& slots,
                     const at::Tensor& found);

}  // namespace attnseg::lattice_hash::gpu
