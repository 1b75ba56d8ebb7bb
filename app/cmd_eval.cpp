#include <spdlog/spdlog.h>

#include <cstdio>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"
#include "data/dataset.h"
#include "engine/distributed.h"
#include "engine/evaluator.h"
#include "launch.h"

namespace attnseg::app {

void setup_eval(CLI::App& app, EvalOptions& options) {
  app.add_option("config", options.config, "experiment config (YAML), or a run's work directory")->required();
  app.add_option("--checkpoint", options.checkpoint, "checkpoint to evaluate (default with a run directory: its latest)");
  app.add_option("--json", options.json, "write every figure to this JSON file");
  app.add_option("--show-dir", options.show_dir, "write colour overlays of the predictions here");
  app.add_option("--nproc", options.nproc,
                 "start N local processes, each segmenting every N-th image (c10d: Gloo, or NCCL on GPUs); under "
                 "torchrun or with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set, each process joins that job "
                 "instead")
      ->check(CLI::Range(1, 1024));
  app.add_option("overrides", options.overrides, "dotted.key=value overrides");
}

int run_eval(const EvalOptions& options) {
  const TrainedModel trained = resolve_trained_model(options.config, options.checkpoint);
  const Experiment experiment = read_experiment(Config::load(trained.config, options.overrides));
  // Known now, not after an evaluation that may take minutes.
  prepare_output_file(options.json, "--json");
  if (options.nproc > 1) {
    // What every rank would refuse alike is refused once, before any rank starts.
    const bool nccl = check_local_launch(experiment.runtime);
    FolderDataset val_split(experiment.data.val);
    return launch_local_ranks("eval", options.nproc, options.argv, nccl, "");
  }
  const RankRuntime rank = begin_rank("eval", experiment.runtime);
  log_latest_of_run(trained);
  const EvalResult result =
      evaluate(experiment, rank.runtime, trained.checkpoint, options.show_dir, sum_over(rank.group.get()));
  if (rank.runtime.rank != 0) return 0;  // rank 0 reports for the job
  std::printf("%s", format_report(result).c_str());
  if (!options.json.empty()) {
    write_text_atomically(options.json, report_json(result).dump(2) + "\n");
    spdlog::info("wrote {}", options.json);
  }
  return 0;
}

}  // namespace attnseg::app
