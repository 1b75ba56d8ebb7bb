// Where and in what precision a command computes: the `runtime` section of every config
// (`device`, `precision`, `threads`), resolved once at a command's start into a Runtime that
// the model builder, the trainer, evaluation, the benchmark and the demo all take.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace attnseg {

// fp32: everything in float. bf16 / fp16: autocast (matrix products and convolutions in the
// lower precision, reductions and the loss in float); fp16 needs a CUDA device and trains
// with a dynamic loss scaler.
enum class Precision { fp32, bf16, fp16 };

const char* precision_name(Precision precision);
// "fp32", "bf16" or "fp16"; `where` names the key or flag in the error.
Precision parse_precision(const std::string& text, const std::string& where);
// "auto", "cpu", "cuda" or "cuda:N": checks the form only (whether the device exists is
// start_runtime's question); `where` names the key or flag in the error.
void check_device_name(const std::string& text, const std::string& where);

// As a config or the command line asks.
struct RuntimeSettings {
  std::string device = "auto";  // auto: the first GPU when there is one, else the CPU
  Precision precision = Precision::fp32;
  int threads = 0;  // CPU threads of LibTorch's pool; 0: every core (shared by a job's local ranks)
  // Data-parallel jobs: the process group's backend (auto: gloo on CPUs, nccl on GPUs) and how
  // long a rank waits in a collective for the others before the job ends.
  std::string dist_backend = "auto";
  double dist_timeout_s = 600;
  // How messages name the keys these came from.
  std::string device_key = "runtime.device", precision_key = "runtime.precision";
};

// Resolved: a device that exists and can compute in the precision.
struct Runtime {
  c10::Device device{c10::kCPU};
  Precision precision = Precision::fp32;
  int threads = 1;
  // This process's place in a data-parallel job: it reads shard `rank` of each global batch,
  // and only rank 0 writes checkpoints, logs and the progress bar.
  int rank = 0, world_size = 1;

  bool cuda() const { return device.is_cuda(); }
  bool autocast() const { return precision != Precision::fp32; }
  c10::ScalarType autocast_dtype() const {
    return precision == Precision::fp16 ? c10::kHalf : c10::kBFloat16;
  }
};

// Resolves `auto`, refuses a device that is not there or a precision it cannot run (one
// line naming the key), sets the thread count. Call it before anything is written.
Runtime start_runtime(const RuntimeSettings& settings);

// Waits until the runtime's device has finished the work queued on it (nothing on the CPU,
// whose operators return when done): what a clock reading after GPU work needs.
void wait_for_device(const Runtime& runtime);

// Bytes the runtime's device can still allocate: the CPU's available memory (MemAvailable)
// or the GPU's free memory; -1 when it cannot be told.
int64_t free_memory_bytes(const Runtime& runtime);

// "device cpu, precision fp32, 2 threads, LibTorch 1.13.0", with the GPU's name and memory
// for a CUDA device: what every command logs first.
std::string describe_runtime(const Runtime& runtime);

// Turns autocast on for the runtime's device type and precision while it lives (nothing for
// fp32) and restores what was there before; the outermost guard clears autocast's cache of
// cast weights on exit, as torch.autocast does.
class AutocastGuard {
 public:
  explicit AutocastGuard(const Runtime& runtime);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false, was_enabled_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  c10::ScalarType was_dtype_ = c10::kBFloat16;
};

// Turns autocast off on every device type while it lives (torch.autocast(enabled=False)):
// for the parts of a block whose numbers a lower precision would spoil, computed in float
// whatever the runtime's precision.
class AutocastDisabled {
 public:
  AutocastDisabled();
  ~AutocastDisabled();
  AutocastDisabled(const AutocastDisabled&) = delete;
  AutocastDisabled& operator=(const AutocastDisabled&) = delete;

 private:
  bool cpu_, cuda_;
};

}  // namespace attnseg
