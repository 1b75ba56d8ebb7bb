#include "attention/lattice_hash.h"

#include <ATen/ATen.h>

#include "attention/lattice_hash_kernel.h"
#ifdef ATTNSEG_WITH_CUDA
#include "attention/lattice_hash_cuda.h"
#endif

namespace attnseg::lattice_hash {
namespace {

constexpr int64_t kGrain = 256;

void insert_rows(const at::Tensor& rows, const at::Tensor& slots, const at::Tensor& slot_of) {
#ifdef ATTNSEG_WITH_CUDA
  if (rows.is_cuda()) return gpu::insert_rows(rows, slots, slot_of);
#endif
  const int64_t* r = rows.data_ptr<int64_t>();
  int64_t* s = slots.data_ptr<int64_t>();
  int64_t* out = slot_of.data_ptr<int64_t>();
  const int64_t width = rows.size(1);
  const uint64_t mask = static_cast<uint64_t>(slots.numel() - 1);
  each_index(rows.size(0), kGrain, [&](int64_t i) { out[i] = insert_row(i, r, width, s, mask); });
}

void find_neighbours(const at::Tensor& table, const at::Tensor& rows, const at::Tensor& slots,
                     const at::Tensor& found) {
#ifdef ATTNSEG_WITH_CUDA
  if (rows.is_cuda()) return gpu::find_neighbours(table, rows, slots, found);
#endif
  const int64_t *t = table.data_ptr<int64_t>(), *r = rows.data_ptr<int64_t>(), *s = slots.data_ptr<int64_t>();
  int64_t* out = found.data_ptr<int64_t>();
  const int64_t m = table.size(0), d = table.size(1) - 1;
  const uint64_t mask = static_cast<uint64_t>(slots.numel() - 1);
  each_index(found.numel(), kGrain, [&](int64_t i) { out[i] = find_neighbour(i, t, m, d, r, s, mask); });
}

}  // namespace

Table build(const at::Tensor& input, int64_t capacity) {
  TORCH_CHECK(input.dim() == 2 && input.size(1) >= 2 && input.scalar_type() == at::kLong,
              "lattice_hash: rows must be [R, 1 + d] int64, got ", input.sizes(), " ", input.scalar_type());
  TORCH_CHECK(kernels_run_on(input.device()), "lattice_hash: no kernels for ", input.device());
  const at::Tensor rows = input.contiguous();
  const int64_t count = rows.size(0), d = rows.size(1) - 1;
  if (capacity == 0) {
    // At most half full: a probe ends at an empty slot after a few steps.
    capacity = 2;
    while (capacity < 2 * count) capacity *= 2;
  }
  // An empty slot is left whatever the rows, so every probe ends.
  TORCH_CHECK(capacity > count && (capacity & (capacity - 1)) == 0,
              "lattice_hash: capacity must be a power of two above the ", count, " rows, got ", capacity);
  const at::Tensor slots = at::full({capacity}, -1, rows.options());
  const at::Tensor slot_of = at::empty({count}, rows.options());
  insert_rows(rows, slots, slot_of);
  // Vertices numbered in slot order.
  const at::Tensor occupied = slots.ge(0);
  const at::Tensor vertex_of_slot = occupied.cumsum(0) - 1;
  Table table;
  table.rows = rows.index_select(0, slots.masked_select(occupied));
  const int64_t m = table.rows.size(0);
  table.ids = vertex_of_slot.index_select(0, slot_of);
  const at::Tensor found = at::empty({(d + 1) * 2 * m}, rows.options());
  find_neighbours(table.rows, rows, slots, found);
  // Slot → vertex; not found (−1) → M, through an extra last entry.
  const at::Tensor lookup = at::cat({vertex_of_slot, at::full({1}, m, rows.options())});
  const at::Tensor ids = lookup.index_select(0, at::where(found.ge(0), found, at::full({}, capacity, found.options())))
                             .view({d + 1, 2, m});
  for (int64_t dir = 0; dir <= d; ++dir) {
    table.neighbours.push_back(at::cat({ids[dir], at::full({2, 1}, m, rows.options())}, 1));
  }
  return table;
}

}  // namespace attnseg::lattice_hash
