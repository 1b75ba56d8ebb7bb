// The permutohedral lattice's vertex table as an open-addressing hash table that many threads
// fill at once, one function per GPU thread. The CUDA kernels (lattice_hash_cuda.cu) run
// these on the device; the host runs the very same functions in parallel loops
// (lattice_hash.cpp), so the CPU tests check them against the sort-based table.
//
// A vertex is a row of `width` int64 (the sample, then its first d lattice coordinates). The
// table's slots hold −1 (empty) or the index of the first row that claimed the slot (a
// compare-and-swap), so a row's key is read from the rows themselves: no key is copied, and a
// slot is never written twice. The capacity is a power of two above the number of rows, so a
// probe always ends.
#pragma once

#include <cstdint>

#include "attention/kernel_support.h"

namespace attnseg::lattice_hash {

// *address = desired if it held `expected`; returns what it held.
ATTNSEG_HOST_DEVICE inline int64_t compare_and_swap(int64_t* address, int64_t expected, int64_t desired) {
#if defined(__CUDA_ARCH__)
  return static_cast<int64_t>(atomicCAS(reinterpret_cast<unsigned long long*>(address),
                                        static_cast<unsigned long long>(expected),
                                        static_cast<unsigned long long>(desired)));
#else
  __atomic_compare_exchange_n(address, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  return expected;  // what the address held, whether or not it was swapped
#endif
}

// A slot as another thread may be claiming it.
ATTNSEG_HOST_DEVICE inline int64_t load(const int64_t* address) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const volatile int64_t*>(address);
#else
  return __atomic_load_n(address, __ATOMIC_ACQUIRE);
#endif
}

// FNV-1a over the row's values from its offset basis, its high half folded in (the mask keeps
// low bits).
constexpr uint64_t kHashBasis = 0xcbf29ce484222325ULL;
ATTNSEG_HOST_DEVICE inline uint64_t mix(uint64_t h, int64_t value) {
  return (h ^ static_cast<uint64_t>(value)) * 0x100000001b3ULL;
}
ATTNSEG_HOST_DEVICE inline uint64_t fold(uint64_t h) { return h ^ (h >> 32); }

// Thread `r` of the rows: the slot holding row r's vertex, claimed for it when none does.
ATTNSEG_HOST_DEVICE inline int64_t insert_row(int64_t r, const int64_t* rows, int64_t width, int64_t* slots,
                                              uint64_t mask) {
  const int64_t* row = rows + r * width;
  uint64_t h = kHashBasis;
  for (int64_t j = 0; j < width; ++j) h = mix(h, row[j]);
  for (uint64_t slot = fold(h) & mask;; slot = (slot + 1) & mask) {
    int64_t entry = load(slots + slot);
    if (entry < 0) {
      entry = compare_and_swap(slots + slot, -1, r);
      if (entry < 0) return static_cast<int64_t>(slot);  // claimed: r is the vertex's first row
    }
    const int64_t* other = rows + entry * width;
    bool same = true;
    for (int64_t j = 0; j < width && same; ++j) same = other[j] == row[j];
    if (same) return static_cast<int64_t>(slot);
  }
}

// The step to a vertex's neighbour along lattice direction `dir` (0..d), side + (0) or − (1),
// in column j of a row (column 0 is the sample): ±d in coordinate dir, ∓1 in the others.
ATTNSEG_HOST_DEVICE inline int64_t step(int64_t j, int64_t dir, int64_t side, int64_t d) {
  if (j == 0) return 0;
  const int64_t along = j - 1 == dir ? d : -1;
  return side == 0 ? along : -along;
}

// Thread `index` of (d+1) · 2 · M: the slot of vertex m's neighbour along direction `dir` on
// side `side` (index = (dir · 2 + side) · M + m), or −1 where that vertex is not in the table.
// `table` holds the M vertices' rows.
ATTNSEG_HOST_DEVICE inline int64_t find_neighbour(int64_t index, const int64_t* table, int64_t m_count, int64_t d,
                                                  const int64_t* rows, const int64_t* slots, uint64_t mask) {
  const int64_t m = index % m_count, side = (index / m_count) % 2, dir = index / (2 * m_count), width = d + 1;
  const int64_t* row = table + m * width;
  uint64_t h = kHashBasis;
  for (int64_t j = 0; j < width; ++j) h = mix(h, row[j] + step(j, dir, side, d));
  for (uint64_t slot = fold(h) & mask;; slot = (slot + 1) & mask) {
    const int64_t entry = slots[slot];
    if (entry < 0) return -1;
    const int64_t* other = rows + entry * width;
    bool same = true;
    for (int64_t j = 0; j < width && same; ++j) same = other[j] == row[j] + step(j, dir, side, d);
    if (same) return static_cast<int64_t>(slot);
  }
}

}  // namespace attnseg::lattice_hash
