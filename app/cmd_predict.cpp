#include <spdlog/spdlog.h>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "engine/inference.h"
#include "engine/predict.h"

namespace attnseg::app {

void setup_predict(CLI::App& app, PredictOptions& options) {
  app.add_option("config", options.config, "the model's config (YAML), or a run's work directory")->required();
  app.add_option("--checkpoint", options.checkpoint,
                 "checkpoint to load (default with a run directory: its latest)");
  app.add_option("--input", options.inputs, "an image, a directory (searched recursively) or a glob; repeatable")
      ->required()
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);  // `--input a.png key=value`: the override stays one
  app.add_option("--out", options.out, "write labels/, overlays/ and probabilities/ here")->required();
  app.add_flag("--overlay", options.overlay, "also write the image under the class colours");
  app.add_flag("--probabilities", options.probabilities,
               "also write each class's probability per pixel (float32 [K, H, W], NumPy .npy)");
  app.add_flag("--dataset-ids", options.dataset_ids,
               "write labels/ in the values the dataset's own masks use (Cityscapes labelIds, ADE20K 1-150), "
               "as its evaluation server reads them, in grey levels");
  app.add_flag("--slide", options.slide, "sliding-window inference (eval.crop_size, eval.stride) whatever eval.mode says");
  app.add_option("overrides", options.overrides, "dotted.key=value overrides");
}

int run_predict(const PredictOptions& options) {
  const TrainedModel trained = resolve_trained_model(options.config, options.checkpoint);
  std::vector<std::string> overrides = options.overrides;
  if (options.slide) overrides.push_back("eval.mode=slide");
  Experiment experiment = read_experiment(Config::load(trained.config, overrides));
  const std::vector<PredictInput> inputs = find_predict_inputs(options.inputs);
  const Runtime runtime = begin_command("predict", experiment.runtime);
  Predictor predictor(std::move(experiment), runtime, trained.checkpoint);
  spdlog::info("{} images, {}, checkpoint {}", inputs.size(), describe_inference(predictor.experiment().eval),
               trained.checkpoint);
  const PredictSummary summary =
      predict_images(predictor, inputs, options.out, {options.overlay, options.probabilities, options.dataset_ids});
  spdlog::info("wrote {} of {} images into {}", summary.written, inputs.size(), options.out);
  if (summary.failures.empty()) return 0;
  throw Error(std::to_string(summary.failures.size()) + " of " + std::to_string(inputs.size()) +
              " inputs could not be segmented, first: " + summary.failures.front());
}

}  // namespace attnseg::app
