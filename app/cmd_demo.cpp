#include <spdlog/spdlog.h>

#include "commands.h"
#include "core/error.h"
#include "engine/demo.h"

namespace attnseg::app {

void setup_demo(CLI::App& app, DemoOptions& options) {
  app.add_option("config", options.config, "experiment config (YAML) of the checkpoint")->required();
  app.add_option("--checkpoint", options.checkpoint, "checkpoint to run")->required();
  app.add_option("--source", options.source, "camera index, video file or stream URL");
  app.add_flag("--headless", options.headless, "write the annotated video instead of opening a window");
  app.add_option("--output", options.output, "annotated video to write (.mp4 or .avi), with --headless");
  app.add_option("--max-frames", options.max_frames, "stop after this many frames (0: at the end)")
      ->check(non_negative());
  app.add_option("--opacity", options.opacity, "opacity of the class overlay")->check(CLI::Range(0.0, 1.0));
}

int run_demo(const DemoOptions& options) {
  if (!options.headless) {
    throw Error("demo: the windowed demo is not built yet; run it with --headless --output OUT.mp4");
  }
  if (options.output.empty()) throw Error("demo: --headless needs --output OUT.mp4 (or .avi)");
  DemoSettings s;
  s.config = options.config;
  s.checkpoint = options.checkpoint;
  s.source = options.source;
  s.output = options.output;
  s.max_frames = options.max_frames;
  s.opacity = options.opacity;
  const DemoStats stats = run_demo_headless(s);
  spdlog::info("wrote {} frames of {}x{} to {}: {:.1f} ms per frame (median, segmentation and annotation), "
               "{:.1f} FPS overall with reading and writing",
               stats.frames, stats.width, stats.height, options.output, stats.median_ms,
               stats.frames / stats.seconds);
  return 0;
}

}  // namespace attnseg::app
