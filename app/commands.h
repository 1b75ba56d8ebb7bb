// One options struct, one setup_x and one run_x per subcommand; main only wires them.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace attnseg::app {

// Validators whose message names the accepted range in plain integers.
inline CLI::Validator positive() { return CLI::Range(int64_t{1}, int64_t{2147483647}); }
inline CLI::Validator non_negative() { return CLI::Range(int64_t{0}, int64_t{2147483647}); }

struct ListOptions {
  int64_t channels = 256;
};
void setup_list(CLI::App& app, ListOptions& options);
int run_list(const ListOptions& options);

struct SynthOptions {
  std::string out, task = "beacon";
  int64_t train = 1000, val = 200, size = 64, seed = 0;
};
void setup_synth(CLI::App& app, SynthOptions& options);
int run_synth(const SynthOptions& options);

struct TrainOptions {
  std::string config, work_dir;
  bool resume = false;
  int nproc = 1;                  // local worker processes to start (data-parallel)
  std::vector<std::string> overrides;
  std::vector<std::string> argv;  // the whole command line, for --nproc to start the workers with
};
void setup_train(CLI::App& app, TrainOptions& options);
int run_train(const TrainOptions& options);

struct EvalOptions {
  std::string config, checkpoint, json, show_dir;
  int nproc = 1;                  // local processes to shard the validation images over
  std::vector<std::string> overrides;
  std::vector<std::string> argv;  // the whole command line, for --nproc to start the ranks with
};
void setup_eval(CLI::App& app, EvalOptions& options);
int run_eval(const EvalOptions& options);

struct PredictOptions {
  std::string config, checkpoint, out;
  std::vector<std::string> inputs, overrides;
  bool overlay = false, probabilities = false, dataset_ids = false, slide = false;
};
void setup_predict(CLI::App& app, PredictOptions& options);
int run_predict(const PredictOptions& options);

struct BenchOptions {
  std::string blocks = "all", sizes, model, json, csv;
  std::vector<std::string> block_options;  // --set block.key=value
  // The runtime; when not given: the --model config's runtime section, else auto, fp32 and
  // every core.
  std::string device, precision;
  int threads = -1;
  int64_t channels = 512, batch = 1, warmup = 3, iters = 20;
  double max_memory_mb = 0;  // 0: what the device has free
  bool backward = false, no_erf = false, floor = false;
};
void setup_bench(CLI::App& app, BenchOptions& options);
int run_bench(const BenchOptions& options);

struct SweepOptions {
  std::string config, blocks = "all", work_dir;
  int64_t seeds = 1, rounds = 3, iters = 20;
  int nproc = 1;                  // local processes each run is trained and evaluated by
  std::vector<std::string> overrides;
  std::vector<std::string> argv;  // the whole command line, for --nproc to start the ranks with
};
void setup_sweep(CLI::App& app, SweepOptions& options);
int run_sweep(const SweepOptions& options);

struct DemoOptions {
  std::string config, checkpoint, blocks, source = "0", output, save_dir = "demo_saves";
  bool headless = false, realtime = false, loop = false, temporal = false;
  double scene_cut = 40.0;  // DemoRunOptions::scene_cut
  std::vector<int> point;
  int64_t max_frames = 0, compare = 0;
  double opacity = 0.5;
};
void setup_demo(CLI::App& app, DemoOptions& options);
int run_demo(const DemoOptions& options);

struct DataOptions {
  std::string config;
};
void setup_data(CLI::App& app, DataOptions& options);
int run_data(const DataOptions& options);

}  // namespace attnseg::app
