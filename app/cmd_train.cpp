#include <spdlog/spdlog.h>

#include <cmath>

#include <filesystem>

#include "commands.h"
#include "common.h"
#include "engine/experiment.h"
#include "engine/trainer.h"

namespace attnseg::app {

void setup_train(CLI::App& app, TrainOptions& options) {
  app.add_option("config", options.config, "experiment config (YAML)")->required();
  app.add_option("--work-dir", options.work_dir, "output directory (default work_dirs/<config name>)");
  app.add_flag("--resume", options.resume, "continue from the latest checkpoint in the work dir");
  app.add_option("overrides", options.overrides, "dotted.key=value overrides");
}

int run_train(const TrainOptions& options) {
  const Config config = Config::load(options.config, options.overrides);
  const Experiment experiment = read_experiment(config);
  const Runtime runtime = begin_command("train", experiment.runtime);
  const std::filesystem::path work_dir =
      options.work_dir.empty()
          ? std::filesystem::path("work_dirs") / std::filesystem::path(options.config).stem()
          : std::filesystem::path(options.work_dir);
  const TrainResult r = train(experiment, config.dump(), runtime, work_dir, options.resume);
  if (std::isnan(r.final_loss)) {
    spdlog::info("nothing left to train; checkpoint {}", r.checkpoint.string());
  } else {
    spdlog::info("final loss {:.4f}; checkpoint {}", r.final_loss, r.checkpoint.string());
  }
  return 0;
}

}  // namespace attnseg::app
