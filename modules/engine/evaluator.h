// Evaluation: confusion-matrix metrics over the validation split with whole-image or
// sliding-window inference (optionally flip-averaged; engine/inference.h), colour overlays on
// request, and the model's speed at the evaluation resolution (one forward, and the whole
// inference when that makes several).
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <array>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/batch_norm.h"
#include "core/device.h"
#include "engine/experiment.h"
#include "engine/inference.h"
#include "engine/metrics.h"

namespace attnseg {

// IoU of the context classes (eval.context_classes; every class when none is named) over the
// pixels of one region of the dataset's region maps (`<root>/regions/<name>.png`, 8-bit region
// ids, 0 = no region; `<root>/regions.txt` names region 1, 2, ... one per line). The reach
// dataset's regions are its distance bins, so these are a block's reach curve.
struct RegionScore {
  std::string name;
  int64_t pixels = 0;
  double iou = 0;                 // mean over the context classes defined there; NaN if none is
  std::vector<double> class_iou;  // per context class, NaN where undefined
};

struct EvalResult {
  SegMetrics metrics;
  // Pixels counted per (ground truth, prediction): int64 [K, K] on the CPU, rows = ground truth.
  at::Tensor confusion;
  std::vector<std::string> class_names;
  int64_t images = 0;
  SpeedResult speed;  // one forward at the size the model sees of the first image
  // The whole inference of the first image (every view and window of `inference`), measured
  // when that is more than one forward.
  std::optional<SpeedResult> inference_speed;
  std::string checkpoint;
  EvalSettings inference;  // how the scores were made: mode, windows, flip, scales
  // The trained block's effective receptive field (engine/erf.h, threshold 1%): share of its
  // input map, averaged over five central positions of the features of the first few
  // validation images (each cut to the training crop about its centre).
  double erf = 0;
  int64_t erf_images = 0;
  std::array<int64_t, 2> erf_feature{0, 0};
  // Cue influence (eval.cue_classes): over the first few validation images holding both cue
  // and context pixels, the share of the input gradient of the context pixels' own-class logits
  // that falls on the cue's pixels (0 exactly when the cue is out of reach), and the share of the
  // pixels the cue covers, for scale.
  double cue_share = 0, cue_area = 0;
  int64_t cue_images = 0;
  std::vector<std::string> region_classes;  // the classes each RegionScore averages
  std::vector<RegionScore> regions;         // empty when the dataset has no region maps
};

// The class id of each of `names` in `classes` (names the config has already checked).
std::vector<size_t> class_ids(const std::vector<std::string>& names, const std::vector<std::string>& classes);

// The region names of a dataset whose root holds regions.txt and regions/, else none; an
// empty or unreadable regions.txt is an Error naming it.
std::vector<std::string> read_region_names(const std::filesystem::path& root);

// mIoU, per-class IoU and accuracy of `checkpoint` on the validation split, and the model's
// speed on the first validation image (one forward, and the whole inference when it makes
// several), on the runtime's device and precision; with
// `show_dir`, a colour overlay of each prediction is written there. Sharded in a data-parallel
// job as `validate` is (rank r of W segments images r, r + W, ... and writes their overlays;
// `sum_over_ranks` adds the ranks' confusion matrices and image counts, so every rank gets the
// one-process figures); speed, ERF and cue influence are measured by rank 0 alone.
EvalResult evaluate(const Experiment& experiment, const Runtime& runtime, const std::filesystem::path& checkpoint,
                    const std::filesystem::path& show_dir = {}, const SumOverRanks& sum_over_ranks = {});

// Confusion-matrix metrics of `model` on the first `limit` images of `val` (0: every one),
// in eval mode for the call and in training mode again after it when it was so before; no
// random generator is drawn from, so a training run that validates takes the same steps.
// Sharded in a data-parallel job: rank r of W segments images r, r + W, ...; `sum_over_ranks`
// adds the ranks' confusion matrices (every rank must call it), so every rank gets the
// one-process metrics.
struct Validation {
  SegMetrics metrics;
  int64_t images = 0;
  at::Tensor confusion;  // [K, K] int64 on the CPU, the whole split's
};
Validation validate(Segmentor& model, const FolderDataset& val, const Experiment& experiment, const Runtime& runtime,
                    int64_t limit, const SumOverRanks& sum_over_ranks = {});

// The per-class table and summary lines that `attnseg eval` prints.
std::string format_report(const EvalResult& result);
nlohmann::json report_json(const EvalResult& result);

}  // namespace attnseg
