// Process-wide runtime settings: thread count, BLAS sanity, logging.
#pragma once

#include <string>

namespace attnseg {

// Sets LibTorch's intra-op thread count; 0 means every core. LibTorch starts with one thread
// on some machines, so this is always called explicitly. Returns the count in force.
int set_threads(int threads);

// Keeps freed tensor memory in the process instead of handing it back to the kernel after
// every forward: glibc's defaults mmap each block over 128 KiB (its adaptive threshold stops
// at 32 MiB) and trim the heap top eagerly, so every forward page-faults its buffers in anew.
// Measured on the 2-core machine: axial alone on [1, 512, 32, 64] 120-135 → 88 ms, on
// [1, 512, 64, 128] 478-514 → 329-360 ms. The cost is a resident size that stays at its peak
// (as with any caching allocator). No-op without glibc; MALLOC_* variables still override.
// Blocks over 32 MiB, which the threshold cannot reach (a [1, 65536, 256] float map is 64 MiB),
// come from the heap too (no mmap at all): on the 2026-12-07 machine one x*2+1 on such a map
// took 207 ms with a fresh mapping and 3.6 ms from the heap, a matrix product 251 → 49 ms.
// And the heap is never trimmed (it was above 1 GiB free at its top): reformer alone at
// [1, 256, 256, 256], whose forward peaks at 1.6 GB, took 3.1 s with that trim and 0.85 s without.
void keep_freed_memory();

// OpenBLAS chooses its kernels from the CPU it detects as the library loads (or from
// OPENBLAS_CORETYPE), and the kernels of different CPU families sum in different orders, so
// attention blocks (whose products go through BLAS) train to different figures: on the
// development machine (AMD EPYC with AVX-512, whose environment sets OPENBLAS_CORETYPE=Haswell)
// a 300-iteration ccnet run reached loss 0.4546 at iteration 100 on Haswell kernels and 0.3822
// on the SkylakeX kernels that OpenBLAS detects there without the variable. So the command line
// tool pins the family: when OPENBLAS_CORETYPE is unset and the CPU has AVX2 and FMA, it sets
// OPENBLAS_CORETYPE=Haswell and re-executes itself once (OpenBLAS reads the variable only at
// load). A value the user set is kept; elsewhere (no AVX2, not x86-64, a BLAS other than
// OpenBLAS) nothing changes. Returns only when it did not re-execute.
void pin_blas_kernels(char** argv);

// The shared object that provides BLAS in this process, resolved through symlinks
// (empty when none is mapped yet).
std::string blas_library();

// Logs a warning when the BLAS in use is Debian's reference implementation, which ran
// matrix products about 20x slower than OpenBLAS on the development machine.
void warn_if_slow_blas();

// Line-oriented logging on stderr; level is one of trace, debug, info, warn, error, off.
void init_logging(const std::string& level);

}  // namespace attnseg
