#include <spdlog/spdlog.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "demo/display.h"
#include "demo/pipeline.h"
#include "demo/view.h"
#include "demo/window.h"
#include "engine/inference.h"
#include "engine/visualize.h"

namespace attnseg::app {

void setup_demo(CLI::App& app, DemoOptions& options) {
  app.add_option("config", options.config,
                 "experiment config (YAML) of the checkpoint, or a run's work directory")
      ->required();
  app.add_option("--checkpoint", options.checkpoint,
                 "checkpoint of the config's block (default with a run directory: its latest)");
  app.add_option(
      "--blocks", options.blocks,
      "more blocks to switch to, name=checkpoint,... (each built from the config with that block)");
  app.add_option("--source", options.source,
                 "camera index, video file, image sequence (img_%04d.png) or stream URL");
  app.add_flag("--headless", options.headless,
               "write the annotated video instead of opening a window");
  app.add_option("--output", options.output,
                 "annotated video to write (.mp4 or .avi), with --headless");
  app.add_flag(
      "--realtime", options.realtime,
      "read a video file at its own frame rate and drop the frames inference cannot keep up with, "
      "as from a camera (the window always does)");
  app.add_flag("--loop", options.loop, "play a video file again from the start when it ends");
  app.add_option("--point", options.point, "show the influence map of this pixel from the start")
      ->expected(2)
      ->delimiter(',');
  app.add_option("--max-frames", options.max_frames,
                 "stop after showing this many frames (0: at the end)")
      ->check(non_negative());
  app.add_option("--opacity", options.opacity, "opacity of the class overlay")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--compare", options.compare,
                 "after the run, time the bare model N times on the last frame (every view the demo "
                 "infers) and print the demo's overhead against it")
      ->check(non_negative());
  app.add_option("--save-dir", options.save_dir,
                 "where the window's `s` key saves frame, mask and view");
  app.add_flag("--temporal", options.temporal,
               "blocks with memory (compressive) carry it from frame to frame, forgetting it on a "
               "scene cut or block switch; the overlay says which");
  app.add_option("--scene-cut", options.scene_cut,
                 "with --temporal: mean absolute difference of 64x48 grey thumbnails (0-255) "
                 "above which consecutive frames are a scene cut")
      ->check(CLI::Range(0.0, 255.0));
}

int run_demo(const DemoOptions& options) {
  if (options.headless && options.output.empty())
    throw Error("demo: --headless needs --output OUT.mp4 (or .avi)");
  if (!options.headless && !options.output.empty())
    throw Error("demo: --output is for --headless runs");
  if (options.headless && options.loop && options.max_frames == 0) {
    throw Error("demo: --loop with --headless never ends; give --max-frames N");
  }
  const TrainedModel trained = resolve_trained_model(options.config, options.checkpoint);
  const Experiment experiment = read_experiment(Config::load(trained.config));
  if (options.temporal &&
      (experiment.eval.mode != "whole" || experiment.eval.flip || experiment.eval.scales.size() != 1)) {
    // Sliding windows, the flipped pass and several scales are several forwards of one frame: a
    // memory would carry from view to view, not from frame to frame.
    throw Error("demo: --temporal needs eval.mode=whole, eval.flip=false and one ratio in eval.scales in " +
                trained.config);
  }
  const auto more = parse_demo_blocks(options.blocks, experiment.model.block.name);
  if (!options.headless) {
    const std::string problem = display_problem();
    if (!problem.empty()) throw Error("demo: " + problem + "; use --headless --output OUT.mp4");
  }
  const Runtime runtime = begin_command("demo", experiment.runtime);
  log_latest_of_run(trained);
  DemoModels models = load_demo_models(trained.config, trained.checkpoint, more, runtime);
  const auto& classes = models.experiment.data.class_names;
  const auto palette = class_palette(models.experiment.data);
  std::unique_ptr<FrameSource> source;
  try {
    source = open_video_source(options.source);
  } catch (const Error& e) {
    throw Error(std::string("--source ") + e.what());
  }

  DemoControls controls;
  controls.opacity = options.opacity;
  if (options.point.size() == 2) {
    if (options.point[0] < 0 || options.point[1] < 0)
      throw Error("--point: give X,Y inside the frame");
    controls.set_pin(options.point[0], options.point[1]);
  }
  DemoRunOptions run;
  run.max_frames = options.max_frames;
  run.loop = options.loop;
  run.temporal = options.temporal;
  run.scene_cut = options.scene_cut;
  std::unique_ptr<DemoView> view;
  VideoFileView* file = nullptr;
  if (options.headless) {
    std::unique_ptr<VideoFileView> v;
    try {
      v = std::make_unique<VideoFileView>(options.output, source->fps(), classes, palette);
    } catch (const Error& e) {
      throw Error(std::string("--output ") + e.what());
    }
    file = v.get();
    view = std::move(v);
    run.paced = options.realtime && !source->live();
    run.lossless = !options.realtime && !source->live();
  } else {
    view = open_window_view("attnseg demo", classes, palette, options.save_dir);
    run.paced = !source->live();
  }
  const DemoStats stats = run_demo(models, *source, *view, controls, run);
  if (file != nullptr) file->close();
  if (stats.read == 0 && stats.failure.empty()) {
    throw Error("--source " + options.source + ": no frame could be read from it (not a video, an image or an "
                "image sequence OpenCV can decode?)");
  }

  const std::string where = options.headless ? " to " + options.output : "";
  // A rate is frames over the time between the first and the last shown: one frame has none.
  const std::string rate = stats.shown > 1 ? fmt::format(" in {:.1f} s: {:.1f} FPS", stats.seconds, stats.fps)
                                           : std::string("; a frame rate needs two frames");
  spdlog::info("showed {} of {} frames of {}x{}{} ({} dropped){}", stats.shown, stats.read, stats.width,
               stats.height, where, stats.dropped, rate);
  spdlog::info(
      "per frame (medians): model {:.1f} ms, reading {:.1f} ms, colour/normalise/arg-max{} "
      "{:.1f} ms, drawing and {} {:.1f} ms; {:.1f} ms from reading a frame to showing it",
      stats.model_ms, stats.read_ms, controls.pinned() ? "/influence" : "", stats.prepost_ms,
      options.headless ? "writing" : "display", stats.show_ms, stats.latency_ms);
  if (options.compare > 0 && !stats.last_frame.empty()) {
    // the same model on the same frame in the same process, inferring as the demo did (every
    // view of eval.flip and eval.scales), with nothing else running
    DemoBlock& block = models.blocks[static_cast<size_t>(stats.last_block)];
    const SpeedResult bare = measure_inference_speed(
        block.model, frame_input(stats.last_frame, models.experiment.norm).to(runtime.device),
        models.experiment.eval, 3, options.compare, runtime);
    const double per_frame = stats.fps > 0 ? 1000.0 / stats.fps : 0.0;
    const std::string views =
        bare.forwards > 1 ? fmt::format(" ({} forwards: eval.mode, eval.flip, eval.scales)", bare.forwards) : "";
    spdlog::info(
        "bare {} model on the last frame{}, {} runs with nothing else running: {:.1f} ms "
        "({:.1f} FPS); the demo took {:.1f} ms per shown frame, {:.1f} ms ({:.0f}%) more",
        block.name, views, options.compare, bare.median_ms, bare.fps, per_frame,
        per_frame - bare.median_ms, 100.0 * (per_frame - bare.median_ms) / bare.median_ms);
  }
  if (stats.reconnects > 0) spdlog::info("the source was reconnected {} times", stats.reconnects);
  if (!stats.failure.empty()) {
    throw Error(stats.failure + (options.headless
                                     ? " (the " + std::to_string(stats.shown) +
                                           " frames before it are in " + options.output + ")"
                                     : ""));
  }
  return 0;
}

}  // namespace attnseg::app
