// The sweep: every listed block trained with one config, seed set, budget and data (only
// model.attention.type differs), evaluated on the validation split, then benchmarked in turn
// at the evaluation resolution, and the leaderboard written. Each run lives in
// <work_dir>/<block>/seed<k>; a run whose eval.json exists is not retrained, and a run with
// checkpoints but no eval.json resumes from its last checkpoint, so a killed sweep continues
// where it stopped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/device.h"
#include "engine/distributed.h"
#include "engine/leaderboard.h"

namespace attnseg {

struct SweepSettings {
  std::filesystem::path config;
  std::vector<std::string> blocks;
  std::filesystem::path work_dir;
  std::vector<std::string> overrides;  // dotted.key=value, applied to every block
  int64_t seeds = 1;                   // train.seed, train.seed + 1, ...
  int64_t rounds = 3;                  // benchmark rounds over all blocks; the fastest counts
  int64_t warmup = 3, iters = 20;      // per block and round
};

// Trains what is missing, benchmarks, writes leaderboard.{csv,md,png} and scaling.png into
// the work directory and returns the leaderboard; everything on the runtime. In a data-parallel
// job (`group`) every rank takes part in each run's training and sharded evaluation, and rank 0
// alone holds the work directory, writes the reports, benchmarks and returns the leaderboard
// (the others an empty one once the last run is evaluated).
Leaderboard run_sweep(const SweepSettings& settings, const Runtime& runtime, ProcessGroup* group = nullptr);

}  // namespace attnseg
