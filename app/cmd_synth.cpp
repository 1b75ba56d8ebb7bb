#include <spdlog/spdlog.h>

#include "commands.h"
#include "data/synthetic.h"

namespace attnseg::app {

void setup_synth(CLI::App& app, SynthOptions& options) {
  app.add_option("--out", options.out, "output directory")->required();
  app.add_option("--task", options.task,
                 "scene family: beacon (a colour band decides far discs; 6:1 scenes) or reach (a textured key "
                 "decides triangles in four distance bins; 8:1 scenes, with regions/ for per-bin IoU)")
      ->check(CLI::IsMember({"beacon", "reach"}));
  app.add_option("--train", options.train, "number of training images")->check(positive());
  app.add_option("--val", options.val, "number of validation images")->check(positive());
  app.add_option("--size", options.size, "scene height in pixels (at least 16); the width is 6 (reach: 8) times that")
      ->check(CLI::Range(int64_t{16}, int64_t{65535}));
  app.add_option("--seed", options.seed, "random seed");
}

int run_synth(const SynthOptions& options) {
  attnseg::SynthOptions o;
  o.train = options.train;
  o.val = options.val;
  o.size = options.size;
  o.seed = static_cast<uint64_t>(options.seed);
  o.task = options.task;
  const bool replaced = write_synthetic_dataset(options.out, o);
  spdlog::info("wrote {} train and {} val {} scenes of {}x{} (width x height) to {}{}", o.train, o.val, o.task,
               o.size * (o.task == "reach" ? kReachWidthFactor : kSynthWidthFactor), o.size, options.out,
               replaced ? ", replacing the dataset there" : "");
  return 0;
}

}  // namespace attnseg::app
