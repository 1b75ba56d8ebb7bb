// One experiment's configuration, read and validated in one place: every section is parsed
// here, so an unknown key or a bad value fails before any work starts.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "config/config.h"
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
  int64_t speed_warmup = 3;
  int64_t speed_runs = 10;
};

struct Experiment {
  DatasetInfo data;
  TrainPipelineOptions pipeline;
  Normalization norm;
  TrainSettings train;
  EvalSettings eval;
  int threads = 0;
  Segmentor model{nullptr};  // built with the seed, weights fresh
};

Experiment read_experiment(const Config& config);

// Learning rate at `iteration`: poly decay to min_lr after a linear warm-up from
// warmup_ratio·lr (mmsegmentation's PolyLR with linear warm-up).
double poly_lr(const TrainSettings& s, int64_t iteration);

}  // namespace attnseg
