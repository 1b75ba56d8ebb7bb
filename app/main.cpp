#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>
#include <functional>
#include <string>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "core/runtime.h"

int main(int argc, char** argv) {
  attnseg::pin_blas_kernels(argv);
  using namespace attnseg::app;
  CLI::App app{"attnseg: semantic segmentation with pluggable attention blocks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::function<std::string()>(version_line),
                       "Print the version and what this build was made with, then exit");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off");

  ListOptions list;
  SynthOptions synth;
  TrainOptions train;
  EvalOptions eval;
  PredictOptions predict;
  BenchOptions bench;
  SweepOptions sweep;
  DemoOptions demo;
  DataOptions data;
  setup_list(*app.add_subcommand("list", "List every registered attention block"), list);
  setup_synth(*app.add_subcommand("synth", "Write the synthetic long-range-context dataset"), synth);
  setup_train(*app.add_subcommand("train", "Train a model from a config"), train);
  setup_eval(*app.add_subcommand("eval", "Evaluate a checkpoint: mIoU, per-class IoU, speed"), eval);
  setup_predict(*app.add_subcommand("predict", "Segment images without labels: class-id PNGs, overlays, probabilities"),
                predict);

  setup_bench(*app.add_subcommand("bench", "Time attention blocks alone on a feature map, or a whole model"), bench);
  setup_sweep(*app.add_subcommand("sweep", "Train, evaluate and bench every listed block alike: the leaderboard"),
              sweep);
  setup_data(*app.add_subcommand("data", "Dataset tools: `data check CONFIG` walks a dataset for defects"), data);
  setup_demo(*app.add_subcommand("demo", "Segment a video or camera stream (headless: to a video file)"), demo);

  train.argv.assign(argv, argv + argc);
  eval.argv = train.argv;
  sweep.argv = train.argv;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // One line like every other error: what was wrong, and where to look.
    std::fprintf(stderr, "error: %s (see %s --help)\n", attnseg::one_line(e.what()).c_str(), argv[0]);
    return e.get_exit_code();
  }
  try {
    attnseg::init_logging(log_level);
    attnseg::keep_freed_memory();
    // Commands that compute warn after their first line, which names the runtime.
    if (app.got_subcommand("list") || app.got_subcommand("synth") || app.got_subcommand("data")) {
      attnseg::warn_if_slow_blas();
    }
    if (app.got_subcommand("list")) return run_list(list);
    if (app.got_subcommand("synth")) return run_synth(synth);
    if (app.got_subcommand("train")) return run_train(train);
    if (app.got_subcommand("eval")) return run_eval(eval);
    if (app.got_subcommand("predict")) return run_predict(predict);
    if (app.got_subcommand("bench")) return run_bench(bench);
    if (app.got_subcommand("sweep")) return run_sweep(sweep);
    if (app.got_subcommand("demo")) return run_demo(demo);
    if (app.got_subcommand("data")) return run_data(data);
  } catch (const attnseg::RankZeroRefused&) {
    return attnseg::kDeferredToRankZero;
  } catch (const attnseg::Error& e) {
    std::fprintf(stderr, "error: %s\n", attnseg::one_line(e.what()).c_str());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error: %s\n", attnseg::one_line(e.what_without_backtrace()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", attnseg::one_line(e.what()).c_str());
    return 1;
  }
  return 1;
}
