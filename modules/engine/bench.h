// Speed of each attention block alone on a feature map, or of a whole model from a config:
// parameters, multiply-adds (a block's analytic count, attention products included; for a
// model, those its convolutions and matrix products execute), median forward latency with
// its quartiles after warm-up, under inference mode, the throughput that latency gives, the
// peak tensor memory of the forward, optionally the median and peak memory of a forward and
// backward pass in training mode, and the growth exponents of time and memory with the token
// count N = H·W, fitted over the sizes measured.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <string>
#include <vector>

namespace attnseg {

struct BenchSettings {
  std::vector<std::string> blocks;
  std::vector<std::array<int64_t, 2>> sizes{{32, 64}, {64, 128}};  // height, width
  int64_t channels = 512, batch = 1, warmup = 3, iters = 20;
  int threads = 0;  // 0: all cores
  std::string device = "cpu";
  bool backward = false;  // also time forward + backward in training mode
  // A config file: bench this whole model (sizes are image sizes, 3 input channels) instead
  // of the blocks alone.
  std::string model;
};

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
};

struct BlockResult {
  std::string block;
  int64_t parameters = 0;
  std::vector<SizeResult> sizes;
  double time_exponent = 0;    // slope of log(time) against log(N); NaN with one size
  double memory_exponent = 0;  // slope of log(peak bytes) against log(N); NaN likewise or with 0 bytes
};

struct BenchReport {
  BenchSettings settings;
  int threads = 0;
  std::vector<BlockResult> blocks;
};

// "32x64,64x128" → {{32, 64}, {64, 128}}; throws attnseg::Error naming the bad item.
std::vector<std::array<int64_t, 2>> parse_sizes(const std::string& text);
// "all" → every registered block; otherwise a comma-separated list of known names.
std::vector<std::string> parse_block_list(const std::string& text);

// Least-squares slope of log(y) against log(x); NaN when fewer than two distinct x or when
// some y is not positive.
double growth_exponent(const std::vector<double>& x, const std::vector<double>& y);

BenchReport bench_blocks(const BenchSettings& settings);

std::string format_bench(const BenchReport& report);
nlohmann::json bench_json(const BenchReport& report);
// One row per block and size, with a header line.
std::string bench_csv(const BenchReport& report);

}  // namespace attnseg
