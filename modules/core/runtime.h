// Process-wide runtime settings: thread count, BLAS sanity, logging.
#pragma once

#include <string>

namespace attnseg {

// Sets LibTorch's intra-op thread count; 0 means every core. LibTorch starts with one thread
// on some machines, so this is always called explicitly. Returns the count in force.
int set_threads(int threads);

// The shared object that provides BLAS in this process, resolved through symlinks
// (empty when none is mapped yet).
std::string blas_library();

// Logs a warning when the BLAS in use is Debian's reference implementation, which ran
// matrix products about 20x slower than OpenBLAS on the development machine.
void warn_if_slow_blas();

// Line-oriented logging on stderr; level is one of trace, debug, info, warn, error, off.
void init_logging(const std::string& level);

}  // namespace attnseg
