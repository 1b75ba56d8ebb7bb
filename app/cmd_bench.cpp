#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "engine/bench.h"
#include "engine/experiment.h"

namespace attnseg::app {

void setup_bench(CLI::App& app, BenchOptions& options) {
  auto* blocks = app.add_option("--blocks", options.blocks, "comma-separated block names, or 'all'");
  auto* channels =
      app.add_option("--channels", options.channels, "channels of the feature map")->check(positive());
  app.add_option("--sizes", options.sizes,
                 "sizes HxW, comma-separated: of the feature map (default 32x64,64x128), or with --model of "
                 "the image (default the config's crop size)");
  app.add_option("--batch", options.batch, "batch size")->check(positive());
  app.add_option("--warmup", options.warmup, "untimed runs before timing")->check(non_negative());
  app.add_option("--iters", options.iters, "timed runs per size")->check(positive());
  app.add_option("--threads", options.threads, "CPU threads (0: all cores; default: the config's, else 0)")
      ->check(non_negative());
  app.add_option("--device", options.device, "auto, cpu, cuda or cuda:N (default: the config's, else auto)");
  app.add_option("--precision", options.precision, "fp32, bf16 or fp16 (default: the config's, else fp32)");
  app.add_option("--model", options.model, "bench this whole model (a config file) instead of blocks alone")
      ->excludes(blocks)
      ->excludes(channels);
  app.add_option("--set", options.block_options,
                 "a listed block's option, BLOCK.KEY=VALUE as under model.attention in a config "
                 "(routing.local_heads=0); repeatable")
      ->excludes("--model");
  app.add_flag("--backward", options.backward, "also time forward + backward in training mode");
  app.add_flag("--no-erf", options.no_erf,
               "leave out each block's effective receptive field (a forward and backward per sampled position "
               "at the smallest size: minutes on a large map)");
  app.add_flag("--floor", options.floor,
               "also measure the device's matrix-product rate and copy bandwidth in the precision, and give each "
               "size its floor (the larger of its multiply-adds at that rate and its input, output and weights "
               "moved once at that bandwidth) and median / floor");
  app.add_option("--max-memory", options.max_memory_mb,
                 "MB a block may use at its peak (default: what the device has free); a block whose estimated "
                 "peak at the largest size exceeds it is not run");
  app.add_option("--json", options.json, "write every figure to this JSON file");
  app.add_option("--csv", options.csv, "write one row per block and size to this CSV file");
}

int run_bench(const BenchOptions& options) {
  BenchSettings s;
  RuntimeSettings runtime;
  if (!options.model.empty()) {
    s.model = options.model;
    const Experiment x = read_experiment(Config::load(options.model));
    runtime = x.runtime;
    s.sizes = options.sizes.empty() ? std::vector<std::array<int64_t, 2>>{x.pipeline.crop_size}
                                    : parse_sizes(options.sizes);
  } else {
    s.blocks = parse_block_list(options.blocks);
    s.block_options = options.block_options;
    s.sizes = parse_sizes(options.sizes.empty() ? "32x64,64x128" : options.sizes);
  }
  if (!options.device.empty()) {
    runtime.device = options.device;
    runtime.device_key = "--device";
  }
  if (!options.precision.empty()) {
    runtime.precision = parse_precision(options.precision, "--precision");
    runtime.precision_key = "--precision";
  }
  if (options.threads >= 0) runtime.threads = options.threads;
  s.channels = options.channels;
  s.batch = options.batch;
  s.warmup = options.warmup;
  s.iters = options.iters;
  s.backward = options.backward;
  s.erf = !options.no_erf;
  s.floor = options.floor;
  if (!std::isfinite(options.max_memory_mb) || options.max_memory_mb < 0 || options.max_memory_mb > 1e12) {
    throw Error("--max-memory must be a number of megabytes (0 for what the device has free), got " +
                std::to_string(options.max_memory_mb));
  }
  s.max_memory_bytes = static_cast<int64_t>(options.max_memory_mb * 1024.0 * 1024.0);
  // Known now, not after the timings.
  prepare_output_file(options.json, "--json");
  prepare_output_file(options.csv, "--csv");
  const Runtime rt = begin_command("bench", runtime);
  const BenchReport report = bench_blocks(s, rt);
  std::printf("%s", format_bench(report).c_str());
  std::fflush(stdout);  // the table before any log line when both go to one pipe
  if (!options.json.empty()) {
    write_text_atomically(options.json, bench_json(report).dump(2) + "\n");
    spdlog::info("wrote {}", options.json);
  }
  if (!options.csv.empty()) {
    write_text_atomically(options.csv, bench_csv(report));
    spdlog::info("wrote {}", options.csv);
  }
  return 0;
}

}  // namespace attnseg::app
