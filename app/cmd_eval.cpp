#include <spdlog/spdlog.h>

#include <cstdio>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"
#include "engine/evaluator.h"

namespace attnseg::app {

void setup_eval(CLI::App& app, EvalOptions& options) {
  app.add_option("config", options.config, "experiment config (YAML), or a run's work directory")->required();
  app.add_option("--checkpoint", options.checkpoint, "checkpoint to evaluate (default with a run directory: its latest)");
  app.add_option("--json", options.json, "write every figure to this JSON file");
  app.add_option("--show-dir", options.show_dir, "write colour overlays of the predictions here");
  app.add_option("overrides", options.overrides, "dotted.key=value overrides");
}

int run_eval(const EvalOptions& options) {
  const TrainedModel trained = resolve_trained_model(options.config, options.checkpoint);
  const Experiment experiment = read_experiment(Config::load(trained.config, options.overrides));
  const Runtime runtime = begin_command("eval", experiment.runtime);
  const EvalResult result = evaluate(experiment, runtime, trained.checkpoint, options.show_dir);
  std::printf("%s", format_report(result).c_str());
  if (!options.json.empty()) {
    write_text_atomically(options.json, report_json(result).dump(2) + "\n");
    spdlog::info("wrote {}", options.json);
  }
  return 0;
}

}  // namespace attnseg::app
