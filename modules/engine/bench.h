// Speed of each attention block alone on a feature map: parameters, analytic multiply-adds
// (attention products included), median forward latency with its quartiles after warm-up,
// under inference mode, the throughput that latency gives, optionally the median of a
// forward and backward pass in training mode, and the growth exponent of time with the
// token count N = H·W, fitted over the sizes measured.
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
};

struct SizeResult {
  std::array<int64_t, 2> size{0, 0};
  int64_t macs = 0;
  double median_ms = 0, p25_ms = 0, p75_ms = 0;
  double images_per_s = 0;  // batch / median forward time
  // With BenchSettings::backward: forward + backward of sum(output) in training mode,
  // gradients to the input and every parameter; 0 otherwise.
  double train_median_ms = 0, train_p25_ms = 0, train_p75_ms = 0;
};

struct BlockResult {
  std::string block;
  int64_t parameters = 0;
  std::vector<SizeResult> sizes;
  double time_exponent = 0;  // slope of log(time) against log(N); NaN with one size
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

// Least-squares slope of log(y) against log(x); NaN when fewer than two distinct x.
double growth_exponent(const std::vector<double>& x, const std::vector<double>& y);

BenchReport bench_blocks(const BenchSettings& settings);

std::string format_bench(const BenchReport& report);
nlohmann::json bench_json(const BenchReport& report);
// One row per block and size, with a header line.
std::string bench_csv(const BenchReport& report);

}  // namespace attnseg
