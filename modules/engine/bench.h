// Speed of each attention block alone on a feature map, or of a whole model from a config:
// parameters, multiply-adds (a block's analytic count, attention products included; for a
// model, those its convolutions and matrix products execute), median forward latency with
// its quartiles after warm-up, under inference mode, the throughput that latency gives, the
// peak tensor memory of the forward, optionally the median and peak memory of a forward and
// backward pass in training mode, and the growth exponents of time and memory with the token
// count N = H·W, fitted over the sizes measured; optionally each size's floor, the time below
// which no version of the subject could run on the device (see Ceilings).
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <array>
#include <functional>
#include <memory>
#include <limits>
#include <string>
#include <vector>

#include "attention/block.h"
#include "core/device.h"
#include "head/segmentor.h"

namespace attnseg {

struct BenchSettings {
  std::vector<std::string> blocks;
  // Options of the listed blocks, "block.key=value" as under model.attention in a config
  // (routing.local_heads=0); the others keep their defaults.
  std::vector<std::string> block_options;
  std::vector<std::array<int64_t, 2>> sizes{{32, 64}, {64, 128}};  // height, width
  int64_t channels = 512, batch = 1, warmup = 3, iters = 20;
  bool backward = false;  // also time forward + backward in training mode
  // A block's effective receptive field at the smallest size (blocks alone only): a forward and
  // backward per output position sampled, minutes on a large map.
  bool erf = true;
  // A config file: bench this whole model (sizes are image sizes, 3 input channels) instead
  // of the blocks alone.
  std::string model;
  // A block (or model) whose estimated peak memory at its largest size exceeds this is not run;
  // 0: the memory the device has free.
  int64_t max_memory_bytes = 0;
  // Measure the device's ceilings once and give every size its floor and median / floor.
  bool floor = false;
};

// The two rates a pass on the device cannot beat, measured in the runtime's precision (its
// autocast type, float for fp32): floating-point operations per second of a matrix product,
// n×n by n×n (2n³ operations), through mm and as a 1×1 convolution (the two libraries a
// block's products use), the fastest median of either over n doubling from 256 until one
// product takes 20 ms or n reaches 8192; and bytes per second of a large copy on the device
// (read plus written).
struct Ceilings {
  double matrix_flops_per_s = 0;
  int64_t matrix_n = 0;
  std::string matrix_how;  // which gave the rate: "product" (mm) or "1x1 convolution"
  double copy_bytes_per_s = 0;
  int64_t copy_bytes = 0;  // of the tensor copied
};
Ceilings measure_ceilings(const Runtime& runtime);

// A pass's floor: the larger of its multiply-adds (two operations each) at the matrix rate
// and `bytes` at the copy rate.
struct Floor {
  double ms = 0;
  bool memory_bound = false;  // the bytes' time is the larger
};
Floor floor_of(int64_t macs, int64_t bytes, const Ceilings& ceilings);

// The fewest bytes one forward moves: its input read once, its output written once and its
// parameters read once, each element in the precision's width (4 bytes in fp32, 2 in bf16 and
// fp16) however the subject stores it, so that the floor stays a floor.
int64_t minimum_bytes(int64_t input_elements, int64_t output_elements, int64_t parameters, Precision precision);

struct SizeResult {
  std::array<int64_t, 2> size{0, 0};
  int64_t macs = 0;
  double median_ms = 0, p25_ms = 0, p75_ms = 0;
  double images_per_s = 0;  // batch / median forward time
  // With BenchSettings::backward: forward + backward of sum(output) in training mode,
  // gradients to the input and every parameter; 0 otherwise.
  double train_median_ms = 0, train_p25_ms = 0, train_p75_ms = 0;
  // Peak bytes of tensors allocated during one forward (inference mode), and during one
  // forward + backward with BenchSettings::backward (0 otherwise); input and weights excluded.
  int64_t peak_bytes = 0, train_peak_bytes = 0;
  // Of one forward's output; 0 when the output is the input itself (the identity block).
  int64_t output_elements = 0;
  bool output_is_input = false;
  // With BenchSettings::floor (0 otherwise): minimum_bytes of the forward and its floor.
  int64_t min_bytes = 0;
  Floor floor;
};

struct BlockResult {
  std::string block;
  int64_t parameters = 0;
  std::vector<SizeResult> sizes;
  double time_exponent = 0;    // slope of log(time) against log(N); NaN with one size
  double memory_exponent = 0;  // slope of log(peak bytes) against log(N); NaN likewise or with 0 bytes
  // A block alone (not a model): its effective receptive field at initialisation (engine/erf.h,
  // threshold 1%) at the first size, averaged over five positions and two random inputs; NaN
  // for a model.
  double erf = std::numeric_limits<double>::quiet_NaN();
};

struct BenchReport {
  BenchSettings settings;
  Runtime runtime;
  std::vector<BlockResult> blocks;
  // Blocks not run: why each cannot run on the runtime, or would not fit in memory.
  std::vector<std::string> refused;
  Ceilings ceilings;  // measured with BenchSettings::floor, zero otherwise
};

// What is benched, a block alone or a whole model, behind the same calls; the sweep times its
// trained models and their blocks through these too.
struct BenchSubject {
  std::string name;
  std::shared_ptr<torch::nn::Module> module;
  int64_t in_channels = 0;
  std::function<at::Tensor(const at::Tensor&)> infer;       // eval mode
  std::function<at::Tensor(const at::Tensor&)> train_loss;  // a scalar, training mode
  std::function<int64_t(const at::Tensor&)> macs;           // of one forward on this input
  bool takes_images = false;                                // a model: float images in any precision
};
BenchSubject block_subject(const std::string& name, AttentionBlock block, int64_t channels);
BenchSubject model_subject(const std::string& name, Segmentor model);

// A random input [batch, in_channels, H, W] on the runtime's device: float for a model (it takes
// images) and in fp32; for a block alone in bf16 or fp16, that type, as inside a model under
// autocast, where the convolution before the block hands it over in the lower precision.
at::Tensor random_input(const BenchSubject& subject, int64_t batch, const std::array<int64_t, 2>& size,
                        const Runtime& runtime);

// One input: multiply-adds, the median forward (inference mode, the runtime's precision)
// after warm-up, the forward's peak memory and, with `backward`, forward + backward in
// training mode. The subject is left in eval mode.
SizeResult bench_input(const BenchSubject& subject, const at::Tensor& x, int64_t warmup, int64_t iters,
                       bool backward, const Runtime& runtime);

// An estimate of a subject's peak tensor memory at one size, before running it there: its
// measured peaks at the size shrunk by 16, 8, 4 and 2 per side (a shrunk size is measured only
// when the fit so far says it fits in `limit_bytes`), extrapolated as a power of the token
// count fitted over the two largest measured (exponent at least 1: activations grow with the
// map). `measured` is empty when fewer than two shrunk sizes could run (the estimate is then 0).
struct PeakEstimate {
  double bytes = 0;
  double exponent = 0;
  std::vector<std::array<int64_t, 2>> measured;
};
PeakEstimate estimate_peak(const BenchSubject& subject, int64_t batch, const std::array<int64_t, 2>& size,
                           bool backward, const Runtime& runtime, double limit_bytes);

// Least-squares slope of log(y) against log(x); NaN when fewer than two distinct x or when
// some y is not positive.
double growth_exponent(const std::vector<double>& x, const std::vector<double>& y);

// Every block (or the model) at every size on the runtime. A block that cannot run on the
// runtime's device or precision, or whose estimated peak memory (estimate_peak) at the size
// with the most tokens exceeds the limit, is not run and listed in `refused`; when none can
// run, an Error.
BenchReport bench_blocks(const BenchSettings& settings, const Runtime& runtime);

std::string format_bench(const BenchReport& report);
nlohmann::json bench_json(const BenchReport& report);
// One row per block and size, with a header line.
std::string bench_csv(const BenchReport& report);

}  // namespace attnseg
