// Evaluation: confusion-matrix metrics over the validation split with whole-image or
// sliding-window inference (optionally flip-averaged), colour overlays on request, and the
// model's inference speed at the evaluation resolution.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "config/config.h"
#include "engine/experiment.h"
#include "engine/metrics.h"

namespace attnseg {

struct SpeedResult {
  double median_ms = 0, p25_ms = 0, p75_ms = 0, fps = 0;
  std::array<int64_t, 2> resolution{0, 0};  // height, width
  int threads = 0;
};

struct EvalResult {
  SegMetrics metrics;
  std::vector<std::string> class_names;
  int64_t images = 0;
  SpeedResult speed;
  std::string checkpoint;
};

// Class scores [1, K, H, W] for one normalised image [1, 3, H, W].
at::Tensor segment(Segmentor& model, const at::Tensor& image, const EvalSettings& settings);

// Median forward latency of `model` on `image` after warm-up, under inference mode.
SpeedResult measure_speed(Segmentor& model, const at::Tensor& image, int64_t warmup, int64_t runs);

EvalResult evaluate(const Config& config, const std::filesystem::path& checkpoint,
                    const std::filesystem::path& show_dir = {});

// The per-class table and summary lines that `attnseg eval` prints.
std::string format_report(const EvalResult& result);
nlohmann::json report_json(const EvalResult& result);

// One colour per class: fixed distinct colours, then generated ones.
std::vector<cv::Vec3b> default_palette(size_t classes);
// The dataset's own palette (Cityscapes, VOC, ADE20K, CamVid), else default_palette.
std::vector<cv::Vec3b> class_palette(const DatasetInfo& data);
// Image (RGB) blended with the palette colours of `labels`.
cv::Mat overlay(const cv::Mat& rgb, const cv::Mat& labels, const std::vector<cv::Vec3b>& palette,
                double opacity);

}  // namespace attnseg
