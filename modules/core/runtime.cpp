#include "core/runtime.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/error.h"

namespace attnseg {

int set_threads(int threads) {
  if (threads < 0) {
    throw Error("runtime.threads must be 0 (all cores) or positive, got " +
                std::to_string(threads));
  }
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  return at::get_num_threads();
}

void keep_freed_memory() {
#if defined(__GLIBC__)
  // Settings a user made through the environment win.
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "malloc")) return;
  // The largest threshold glibc accepts (half its 64 MiB heap size)...
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 32 << 20);
  // ...and above it no mapping at all: the maps of large feature maps (64 MiB at 256×256×256)
  // are reused from the heap like the smaller ones. (A thread arena that cannot hold a block
  // still maps it: glibc falls back to mmap there whatever this says.)
  if (!std::getenv("MALLOC_MMAP_MAX_")) mallopt(M_MMAP_MAX, 0);
  // Never trim the heap: a block whose peak frees more than any threshold at the heap's top
  // (reformer at 256×256: 1.6 GB) would otherwise hand it back and fault it in on every forward.
  if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, -1);
#endif
}

void pin_blas_kernels(char** argv) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  if (::setenv("OPENBLAS_CORETYPE", "Haswell", 1) != 0) return;
  ::execv("/proc/self/exe", argv);  // returns only on failure: go on with the kernels loaded
  ::unsetenv("OPENBLAS_CORETYPE");
#else
  (void)argv;
#endif
}

std::string blas_library() {
  // The object that the dynamic linker binds sgemm_ to for the whole process: the BLAS that
  // LibTorch's matrix products actually call (LD_PRELOAD and alternatives included).
  void* symbol = ::dlsym(RTLD_DEFAULT, "sgemm_");
  Dl_info info{};
  if (!symbol || ::dladdr(symbol, &info) == 0 || !info.dli_fname) return {};
  std::error_code ec;
  const auto real = std::filesystem::canonical(info.dli_fname, ec);
  return ec ? std::string(info.dli_fname) : real.string();
}

void warn_if_slow_blas() {
  const std::string lib = blas_library();
  // Debian's reference BLAS lives in .../blas/libblas.so.3; OpenBLAS, BLIS and MKL do not.
  if (lib.find("/blas/libblas.so") != std::string::npos) {
    spdlog::warn(
        "BLAS in use is the reference implementation ({}); matrix products run ~20x slower "
        "than with OpenBLAS: apt-get install libopenblas0-pthread",
        lib);
  }
}

void init_logging(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    throw Error("unknown log level '" + level + "'; accepted: trace, debug, info, warn, error, off");
  }
  if (!spdlog::get("attnseg")) spdlog::set_default_logger(spdlog::stderr_color_mt("attnseg"));
  // Progress lines (engine/progress.h) go to the same sinks through a logger of their own,
  // whose level stays the user's while the sweep quiets the default logger.
  if (!spdlog::get("attnseg.progress")) {
    const auto& sinks = spdlog::default_logger()->sinks();
    spdlog::register_logger(std::make_shared<spdlog::logger>("attnseg.progress", sinks.begin(), sinks.end()));
  }
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  spdlog::set_level(parsed);
}

}  // namespace attnseg
