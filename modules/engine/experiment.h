// One experiment's configuration, read and validated in one place: every section is parsed
// here, so an unknown key or a bad value fails before any work starts. Reading builds
// nothing; build_model builds the model an experiment describes, for a runtime.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/device.h"
#include "data/dataset.h"
#include "data/transforms.h"
#include "head/segmentor.h"

namespace attnseg {

struct TrainSettings {
  int64_t iters = 0;
  int64_t batch_size = 8;
  int64_t workers = 2;
  double lr = 0.01, momentum = 0.9, weight_decay = 5e-4;
  double power = 0.9, min_lr = 1e-4;  // poly schedule
  int64_t warmup_iters = 0;
  double warmup_ratio = 0.1;
  int64_t checkpoint_interval = 0;  // 0: only at the end
  int64_t keep_checkpoints = 2;
  int64_t log_interval = 10;
  uint64_t seed = 0;
};

struct EvalSettings {
  std::string mode = "whole";  // or "slide"
  std::array<int64_t, 2> crop_size{512, 512};
  std::array<int64_t, 2> stride{341, 341};
  bool flip = false;
  // The size inference starts from: the image fitted to [long, short] keeping its aspect ratio
  // (mmsegmentation's test Resize), or with {0, 0} the image's own size.
  std::array<int64_t, 2> scale{0, 0};
  // Multi-scale inference: that size times each ratio (rounded), segmented as `mode` says, with
  // `flip` its mirror image too; each view's scores resized back to the image, and the views'
  // probabilities averaged.
  std::vector<double> scales{1.0};
  int64_t speed_warmup = 3;
  int64_t speed_runs = 10;
  // Learning curves: `train` evaluates every `interval` iterations (0: never) on the first
  // `subset` images of the validation split (0: all of them) and logs the figures to
  // metrics.jsonl beside the losses.
  int64_t interval = 0;
  int64_t subset = 0;
  // The classes only context can tell apart (the synthetic discs), and the IoU, in percent,
  // that each must reach for the sweep to count a run as having learned the rule; the
  // leaderboard's "learned at" is the first curve point where all of them pass.
  std::vector<std::string> context_classes;
  double learned_iou = 80;
  // The classes that carry the cue (the beacon, the key): `eval` reports the cue's share of the
  // input gradient of the context classes' outputs, i.e. whether the rule's information reaches them.
  std::vector<std::string> cue_classes;
};

struct Experiment {
  DatasetInfo data;
  TrainPipelineOptions pipeline;
  Normalization norm;
  TrainSettings train;
  EvalSettings eval;
  ModelSettings model;
  RuntimeSettings runtime;
};

Experiment read_experiment(const Config& config);

// The experiment's model with fresh weights: seeded with train.seed and built on the CPU (so
// the weights are the same whatever the device), then moved to the runtime's device. A block
// that cannot run on that device or in that precision is refused here, in one line.
Segmentor build_model(const Experiment& experiment, const Runtime& runtime = Runtime{});

// The size [height, width] the model sees of a height × width image at one of eval.scales'
// ratios: fitted to eval.scale, times the ratio, rounded (as training's random resize rounds),
// at least 1.
std::array<int64_t, 2> view_size(const EvalSettings& settings, int64_t height, int64_t width, double ratio);

// For a block that needs the token count it was trained with (BlockCaps::needs_fixed_tokens):
// why inference on an image of height × width cannot run, when it would run the model on
// another size than the training crop (whole-image mode on another size, or sliding windows
// of another size, at any of eval.scales); "" when it can, and always for other blocks.
std::string fixed_token_refusal(const Experiment& experiment, bool needs_fixed_tokens, int64_t height,
                                int64_t width);
// The same for the experiment's own block, thrown as an Error that starts with `what`.
void check_inference_size(const Experiment& experiment, int64_t height, int64_t width, const std::string& what);

// Learning rate at `iteration`: poly decay to min_lr after a linear warm-up from
// warmup_ratio·lr (mmsegmentation's PolyLR with linear warm-up).
double poly_lr(const TrainSettings& s, int64_t iteration);

}  // namespace attnseg
