#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "data/dataset.h"
#include "engine/experiment.h"
#include "engine/trainer.h"
#include "launch.h"

namespace attnseg::app {

namespace {

std::filesystem::path work_dir_of(const TrainOptions& options) {
  return options.work_dir.empty() ? std::filesystem::path("work_dirs") / std::filesystem::path(options.config).stem()
                                  : std::filesystem::path(options.work_dir);
}

// Starts `options.nproc` local ranks of this training, after refusing once what every rank
// would refuse alike.
int launch_local_workers(const TrainOptions& options) {
  const Experiment experiment = read_experiment(Config::load(options.config, options.overrides));
  const bool nccl = check_local_launch(experiment.runtime);
  check_images_per_rank(experiment.train.batch_size, options.nproc, "the job's");
  FolderDataset train_split(experiment.data.train);
  if (experiment.eval.interval > 0) FolderDataset val_split(experiment.data.val);
  if (!options.resume) refuse_earlier_run(work_dir_of(options));
  return launch_local_ranks("train", options.nproc, options.argv, nccl,
                            " (the last complete checkpoint is kept: --resume continues)");
}

}  // namespace

void setup_train(CLI::App& app, TrainOptions& options) {
  app.add_option("config", options.config, "experiment config (YAML)")->required();
  app.add_option("--work-dir", options.work_dir, "output directory (default work_dirs/<config name>)");
  app.add_flag("--resume", options.resume, "continue from the latest checkpoint in the work dir");
  app.add_option("--nproc", options.nproc,
                 "start N local worker processes, one data-parallel job (c10d: Gloo, or NCCL on GPUs); under "
                 "torchrun or with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, each process joins that job "
                 "instead")
      ->check(CLI::Range(1, 1024));
  app.add_option("overrides", options.overrides, "dotted.key=value overrides");
}

int run_train(const TrainOptions& options) {
  if (options.nproc > 1) return launch_local_workers(options);
  const Config config = Config::load(options.config, options.overrides);
  const Experiment experiment = read_experiment(config);
  const RankRuntime rank = begin_rank("train", experiment.runtime);
  const TrainResult r =
      train(experiment, config.dump(), rank.runtime, work_dir_of(options), options.resume, rank.group.get());
  if (std::isnan(r.final_loss)) {
    spdlog::info("nothing left to train; checkpoint {}", r.checkpoint.string());
  } else {
    spdlog::info("final loss {:.4f}; checkpoint {}", r.final_loss, r.checkpoint.string());
  }
  return 0;
}

}  // namespace attnseg::app
