// The lattice hash table's kernels: one thread per row, then one per vertex, direction and side,
// each running the function of lattice_hash_kernel.h that the host runs in its loops.
#include "attention/lattice_hash_cuda.h"

#include "attention/cuda_launch.cuh"
#include "attention/lattice_hash_kernel.h"

namespace attnseg::lattice_hash::gpu {
namespace {

using cuda_launch::launch;
using cuda_launch::thread_index;

__global__ void insert_rows_kernel(int64_t count, const int64_t* rows, int64_t width, int64_t* slots, uint64_t mask,
                                   int64_t* slot_of) {
  const int64_t i = thread_index();
  if (i < count) slot_of[i] = lattice_hash::insert_row(i, rows, width, slots, mask);
}

__global__ void find_neighbours_kernel(int64_t count, const int64_t* table, int64_t m_count, int64_t d,
                                       const int64_t* rows, const int64_t* slots, uint64_t mask, int64_t* found) {
  const int64_t i = thread_index();
  if (i < count) found[i] = lattice_hash::find_neighbour(i, table, m_count, d, rows, slots, mask);
}

}  // namespace

void insert_rows(const at::Tensor& rows, const at::Tensor& slots, const at::Tensor& slot_of) {
  launch(rows, rows.size(0), insert_rows_kernel, rows.data_ptr<int64_t>(), rows.size(1),
         slots.data_ptr<int64_t>(), static_cast<uint64_t>(slots.numel() - 1), slot_of.data_ptr<int64_t>());
}

void find_neighbours(const at::Tensor& table, const at::Tensor& rows, const at::Tensor& slots,
                     const at::Tensor& found) {
  launch(rows, found.numel(), find_neighbours_kernel, table.data_ptr<int64_t>(),
         table.size(0), table.size(1) - 1, rows.data_ptr<int64_t>(),
         slots.data_ptr<int64_t>(), static_cast<uint64_t>(slots.numel() - 1),
         found.data_ptr<int64_t>());
}

}  // namespace attnseg::lattice_hash::gpu
