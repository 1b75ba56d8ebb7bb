// Inference on images that have no labels: what `attnseg predict` and the library's
// attnseg::Segmenter (include/attnseg/segmenter.h) share. The model runs whole or in sliding
// windows as the experiment's eval section says, on the runtime's device and precision, so a
// prediction here is the one `eval` scores for the same image.
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "core/device.h"
#include "engine/experiment.h"

namespace attnseg {

class Predictor {
 public:
  // The experiment's model on the runtime's device, with `checkpoint` loaded (which must have
  // been written for that model), in eval mode.
  Predictor(Experiment experiment, const Runtime& runtime, const std::filesystem::path& checkpoint);

  // Class scores [1, K, H, W] on the runtime's device for one RGB 8-bit image (CV_8UC3).
  // An image whose size the block cannot take is an Error that starts with `what`.
  at::Tensor scores(const cv::Mat& rgb, const std::string& what = "image");

  const Experiment& experiment() const { return experiment_; }
  const Runtime& runtime() const { return runtime_; }

 private:
  Experiment experiment_;
  Runtime runtime_;
  Segmentor model_{nullptr};
};

// Per-class probabilities [K, H, W], float on the CPU, of class scores [1, K, H, W].
at::Tensor class_probabilities(const at::Tensor& scores);

// One image to segment and the name its outputs take: the path below the --input directory it
// was found in, or the file name, without the extension ("frankfurt/frankfurt_000000_000294").
struct PredictInput {
  std::filesystem::path file, name;
};

// The images that --input values name: a file, a directory (searched recursively for image
// files by extension, in name order) or a glob pattern (`*`, `?`, `[...]`). A value that
// names nothing, a directory without images and two inputs whose outputs would share a name
// are Errors naming them.
std::vector<PredictInput> find_predict_inputs(const std::vector<std::string>& values);

struct PredictOutputs {
  bool overlay = false;        // <out>/overlays/<name>.png: the image under the class colours
  bool probabilities = false;  // <out>/probabilities/<name>.npy: float32 [K, H, W]
  bool dataset_ids = false;    // labels/ as 8-bit grey in the values the dataset's masks store
  double opacity = 0.5;
};

struct PredictSummary {
  int64_t written = 0;
  std::vector<std::string> failures;  // one line per input that could not be segmented, naming it
};

// Segments each input and writes <out>/labels/<name>.png (class ids: an indexed PNG with the
// dataset's palette where it has one, else 8-bit grey levels; with `dataset_ids`, grey levels
// of the dataset's own mask values, stored_values()) and the requested extras, each
// file atomically. An input that cannot be read or segmented at its size is logged, listed in
// the summary and skipped; a file that cannot be written ends the run (an Error naming it).
PredictSummary predict_images(Predictor& predictor, const std::vector<PredictInput>& inputs,
                              const std::filesystem::path& out, const PredictOutputs& outputs);

}  // namespace attnseg
