// The lattice hash table's kernels: one thread per row, then one per vertex, direction and side,
// each running the function of lattice_hash_kernel.h that the host runs in its loops.
#include "attention/lattice_hash_cuda.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "attention/lattice_hash_kernel.h"

namespace attnseg::lattice_hash::gpu {
namespace {

constexpr int kThreads = 256;

__global__ void insert_rows_kernel(int64_t count, const int64_t* rows, int64_t width, int64_t* slots, uint64_t mask,
                                   int64_t* slot_of) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) slot_of[i] = lattice_hash::insert_row(i, rows, width, slots, mask);
}

__global__ void find_neighbours_kernel(int64_t count, const int64_t* table, int64_t m_count, int64_t d,
                                       const int64_t* rows, const int64_t* slots, uint64_t mask, int64_t* found) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) found[i] = lattice_hash::find_neighbour(i, table, m_count, d, rows, slots, mask);
}

unsigned blocks_for(int64_t count) { return static_cast<unsigned>((count + kThreads - 1) / kThreads); }

}  // namespace

void insert_rows(const at::Tensor& rows, const at::Tensor& slots, const at::Tensor& slot_of) {
  const c10::cuda::CUDAGuard guard(rows.device());
  const int64_t count = rows.size(0);
  if (count == 0) return;
  insert_rows_kernel<<<blocks_for(count), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      count, rows.data_ptr<int64_t>(), rows.size(1), slots.data_ptr<int64_t>(),
      static_cast<uint64_t>(slots.numel() - 1), slot_of.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void find_neighbours(const at::Tensor& table, const at::Tensor& rows, const at::Tensor& slots,
                     const at::Tensor& found) {
  const c10::cuda::CUDAGuard guard(rows.device());
  const int64_t count = found.numel();
  if (count == 0) return;
  find_neighbours_kernel<<<blocks_for(count), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      count, table.data_ptr<int64_t>(), table.size(0), table.size(1) - 1, rows.data_ptr<int64_t>(),
      slots.data_ptr<int64_t>(), static_cast<uint64_t>(slots.numel() - 1), found.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace attnseg::lattice_hash::gpu
