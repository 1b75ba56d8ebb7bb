// Evaluation: confusion-matrix metrics over the validation split with whole-image or
// sliding-window inference (optionally flip-averaged; engine/inference.h), colour overlays on
// request, and the model's inference speed at the evaluation resolution.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "core/device.h"
#include "engine/experiment.h"
#include "engine/inference.h"
#include "engine/metrics.h"

namespace attnseg {

struct EvalResult {
  SegMetrics metrics;
  // Pixels counted per (ground truth, prediction): int64 [K, K] on the CPU, rows = ground truth.
  at::Tensor confusion;
  std::vector<std::string> class_names;
  int64_t images = 0;
  SpeedResult speed;
  std::string checkpoint;
  // The trained block's effective receptive field (engine/erf.h, threshold 1%): share of its
  // input map, averaged over five central positions of the features of the first few
  // validation images (each cut to the training crop about its centre).
  double erf = 0;
  int64_t erf_images = 0;
  std::array<int64_t, 2> erf_feature{0, 0};
};

// mIoU, per-class IoU and accuracy of `checkpoint` on the validation split, and the model's
// speed on the first validation image, on the runtime's device and precision; with
// `show_dir`, a colour overlay of each prediction is written there.
EvalResult evaluate(const Experiment& experiment, const Runtime& runtime, const std::filesystem::path& checkpoint,
                    const std::filesystem::path& show_dir = {});

// Confusion-matrix metrics of `model` on the first `limit` images of `val` (0: every one),
// in eval mode for the call and in training mode again after it when it was so before; no
// random generator is drawn from, so a training run that validates takes the same steps.
struct Validation {
  SegMetrics metrics;
  int64_t images = 0;
};
Validation validate(Segmentor& model, const FolderDataset& val, const Experiment& experiment, const Runtime& runtime,
                    int64_t limit);

// The per-class table and summary lines that `attnseg eval` prints.
std::string format_report(const EvalResult& result);
nlohmann::json report_json(const EvalResult& result);

}  // namespace attnseg
