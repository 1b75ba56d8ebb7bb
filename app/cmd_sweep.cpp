#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "common.h"
#include "engine/experiment.h"
#include "engine/sweep.h"
#include "launch.h"

namespace attnseg::app {

void setup_sweep(CLI::App& app, SweepOptions& options) {
  app.add_option("config", options.config, "experiment config (YAML) every block is trained with")->required();
  app.add_option("--blocks", options.blocks, "comma-separated block names, or 'all'");
  app.add_option("--work-dir", options.work_dir, "output directory (default work_dirs/sweep_<config name>)");
  app.add_option("--seeds", options.seeds, "seeds per block (train.seed, train.seed+1, ...)")->check(positive());
  app.add_option("--rounds", options.rounds, "benchmark rounds over all blocks; each block's fastest counts")
      ->check(positive());
  app.add_option("--iters", options.iters, "timed runs per block and round")->check(positive());
  app.add_option("--nproc", options.nproc,
                 "start N local processes that train and evaluate each run as one data-parallel job (c10d: "
                 "Gloo, or NCCL on GPUs); under torchrun or with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, "
                 "each process joins that job instead")
      ->check(CLI::Range(1, 1024));
  app.add_option("overrides", options.overrides, "dotted.key=value overrides, the same for every block");
}

int run_sweep(const SweepOptions& options) {
  SweepSettings s;
  s.config = options.config;
  s.blocks = parse_block_list(options.blocks);
  s.work_dir = options.work_dir.empty()
                   ? std::filesystem::path("work_dirs") / ("sweep_" + std::filesystem::path(options.config).stem().string())
                   : std::filesystem::path(options.work_dir);
  s.overrides = options.overrides;
  s.seeds = options.seeds;
  s.rounds = options.rounds;
  s.iters = options.iters;
  const Experiment experiment = read_experiment(Config::load(options.config, options.overrides));
  if (options.nproc > 1) {
    // What every rank would refuse alike is refused once, before any rank starts.
    const bool nccl = check_local_launch(experiment.runtime);
    check_images_per_rank(experiment.train.batch_size, options.nproc, "each run's");
    return launch_local_ranks("sweep", options.nproc, options.argv, nccl,
                              " (finished runs are kept: the same command continues)");
  }
  const RankRuntime rank = begin_rank("sweep", experiment.runtime);
  const Leaderboard board = attnseg::run_sweep(s, rank.runtime, rank.group.get());
  if (rank.runtime.rank != 0) return 0;  // rank 0 reports for the job
  std::printf("%s", leaderboard_markdown(board).c_str());
  std::fflush(stdout);
  for (const char* name : {"leaderboard.csv", "leaderboard.md", "leaderboard.png", "scaling.png"}) {
    spdlog::info("wrote {}", (s.work_dir / name).string());
  }
  if (board.eval_interval > 0) spdlog::info("wrote {}", (s.work_dir / "curves.png").string());
  if (!board.region_names.empty()) spdlog::info("wrote {}", (s.work_dir / "reach.png").string());
  return 0;
}

}  // namespace attnseg::app
