// Checkpoints: model, optimizer, iteration, the config that made them and the random state,
// in one torch-serialized archive written atomically (temporary file, fsync, rename), so a
// crash mid-write never leaves a half checkpoint where a good one was.
#pragma once

#include <opencv2/core.hpp>
#include <torch/optim/optimizer.h>

#include <filesystem>
#include <string>

#include "head/segmentor.h"

namespace attnseg {

struct CheckpointInfo {
  int64_t iteration = 0;
  std::string config_yaml;
};

void save_checkpoint(const std::filesystem::path& path, const Segmentor& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointInfo& info);

// Loads into `model` (and `optimizer` when given). Throws attnseg::Error naming the file when
// it is missing, corrupt or was written for a model of another shape.
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Segmentor& model,
                               torch::optim::Optimizer* optimizer = nullptr);

// Writes `text` to `path` atomically.
void write_text_atomically(const std::filesystem::path& path, const std::string& text);
// Writes `image` (8-bit, BGR or one channel) to `path` as a PNG, atomically.
void write_png_atomically(const std::filesystem::path& path, const cv::Mat& image);

}  // namespace attnseg
