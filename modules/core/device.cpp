#include "core/device.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <cmath>
#include <fstream>
#include <regex>

#include "core/cpu_bf16.h"
#include "core/error.h"
#include "core/runtime.h"
#include "core/torch_compat.h"

#ifdef ATTNSEG_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace attnseg {

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::bf16:
      return "bf16";
    case Precision::fp16:
      return "fp16";
    case Precision::fp32:
      break;
  }
  return "fp32";
}

Precision parse_precision(const std::string& text, const std::string& where) {
  for (Precision p : {Precision::fp32, Precision::bf16, Precision::fp16}) {
    if (text == precision_name(p)) return p;
  }
  throw Error(where + " must be fp32, bf16 or fp16, got '" + text + "'");
}

void check_device_name(const std::string& text, const std::string& where) {
  static const std::regex form("auto|cpu|cuda(:[0-9]{1,3})?");
  if (!std::regex_match(text, form)) {
    throw Error(where + " must be auto, cpu, cuda or cuda:N, got '" + text + "'");
  }
}

Runtime start_runtime(const RuntimeSettings& s) {
  check_device_name(s.device, s.device_key);
  Runtime rt;
  rt.precision = s.precision;
  const bool have_cuda = torch::cuda::is_available();
  if (s.device == "auto") {
    rt.device = have_cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  } else {
    rt.device = c10::Device(s.device);
  }
  if (rt.device.is_cuda()) {
    if (!have_cuda) {
      throw Error(s.device_key + " is " + s.device +
                  " but no CUDA device is available (none found, or this LibTorch was built without "
                  "CUDA); use cpu or auto");
    }
    const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (!rt.device.has_index()) rt.device = c10::Device(c10::kCUDA, 0);
    if (rt.device.index() >= count) {
      throw Error(s.device_key + " is " + s.device + " but this machine has " + std::to_string(count) +
                  " CUDA device(s), cuda:0 to cuda:" + std::to_string(count - 1));
    }
  } else if (rt.precision == Precision::fp16) {
    throw Error(s.precision_key + " fp16 runs only on a CUDA device (with a loss scaler); on the CPU use "
                "bf16 or fp32");
  }
  if (s.threads < 0) throw Error("runtime.threads must be 0 (all cores) or positive");
  rt.threads = set_threads(s.threads);
  return rt;
}

void warn_if_bf16_sums_in_bf16(const Runtime& rt) {
  if (!rt.cuda() && rt.precision == Precision::bf16 && !cpu_bf16_products_accumulate_in_float()) {
    spdlog::warn("bf16 on this CPU: LibTorch's bf16 matrix products here keep their sums in bf16 (no oneDNN "
                 "bf16 path without AVX-512), so results differ from fp32 by 1-4% rather than 0.3%; fp32 is as "
                 "fast here");
  }
}

bool cpu_bf16_products_accumulate_in_float() {
  static const bool in_float = [] {
    c10::InferenceMode guard;
    // 16×1024×16, above the size (16³) under which LibTorch 1.13 keeps even an AVX-512 bf16
    // CPU's products off oneDNN: a smaller probe answers for tiny products only (on a Zen 5 it
    // said "bf16 sums" while every product a block runs summed in float).
    const at::Tensor a = at::ones({16, 1024}, at::kBFloat16), b = at::ones({1024, 16}, at::kBFloat16);
    return at::mm(a, b).to(at::kFloat).min().item<float>() == 1024.0f;
  }();
  return in_float;
}

void wait_for_device(const Runtime& rt) {
  if (rt.cuda()) torch::cuda::synchronize(rt.device.index());
}

int64_t free_memory_bytes(const Runtime& runtime) {
#ifdef ATTNSEG_WITH_CUDA
  if (runtime.device.is_cuda()) {
    c10::cuda::CUDAGuard guard(runtime.device);
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return -1;
    return static_cast<int64_t>(free);
  }
#endif
  if (!runtime.device.is_cpu()) return -1;
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return -1;
}

std::string describe_runtime(const Runtime& rt) {
  std::string device = rt.device.str();
#ifdef ATTNSEG_WITH_CUDA
  if (rt.device.is_cuda()) {
    const cudaDeviceProp* p = at::cuda::getDeviceProperties(rt.device.index());
    const long tenths = std::lround(static_cast<double>(p->totalGlobalMem) / (1024.0 * 1024.0 * 1024.0) * 10);
    device += std::string(" (") + p->name + ", " + std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) +
              " GiB)";
  }
#endif
  return "device " + device + ", precision " + precision_name(rt.precision) + ", " + std::to_string(rt.threads) +
         (rt.threads == 1 ? " thread" : " threads") + ", LibTorch " + TORCH_VERSION;
}

AutocastGuard::AutocastGuard(const Runtime& rt) {
  if (!rt.autocast()) return;
  active_ = true;
  type_ = rt.device.type();
  was_enabled_ = compat::autocast_enabled(type_);
  was_dtype_ = compat::autocast_dtype(type_);
  compat::set_autocast_enabled(type_, true);
  compat::set_autocast_dtype(type_, rt.autocast_dtype());
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  compat::set_autocast_enabled(type_, was_enabled_);
  compat::set_autocast_dtype(type_, was_dtype_);
}

AutocastDisabled::AutocastDisabled()
    : cpu_(compat::autocast_enabled(c10::DeviceType::CPU)), cuda_(compat::autocast_enabled(c10::DeviceType::CUDA)) {
  compat::set_autocast_enabled(c10::DeviceType::CPU, false);
  compat::set_autocast_enabled(c10::DeviceType::CUDA, false);
}

AutocastDisabled::~AutocastDisabled() {
  compat::set_autocast_enabled(c10::DeviceType::CPU, cpu_);
  compat::set_autocast_enabled(c10::DeviceType::CUDA, cuda_);
}

}  // namespace attnseg
