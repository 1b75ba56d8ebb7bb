// Training and evaluation transforms on OpenCV images, as in mmsegmentation's pipelines:
// random resize over a ratio range, random crop with ignore-aware padding, horizontal flip,
// photometric distortion and normalisation. Each step is a free function of (sample, rng).
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <array>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "core/rng.h"

namespace attnseg {

class ConfigNode;

struct Normalization {
  std::array<double, 3> mean{123.675, 116.28, 103.53};  // ImageNet, RGB, 0..255
  std::array<double, 3> std{58.395, 57.12, 57.375};
};

struct TrainPipelineOptions {
  // Keep-ratio target size (long side, short side) the ratio range multiplies; {0, 0} scales
  // relative to the image itself.
  std::array<int64_t, 2> scale{0, 0};
  std::array<double, 2> ratio_range{0.5, 2.0};
  std::array<int64_t, 2> crop_size{512, 512};  // height, width
  double flip_prob = 0.5;
  bool photometric = true;
};

// Scales image (bilinear) and mask (nearest) by a random factor from the ratio range.
void random_resize(Sample& sample, const TrainPipelineOptions& options, Rng& rng);

// The factor that fits an image of height × width to `scale` = [long, short] keeping its aspect
// ratio (mmsegmentation's keep-ratio Resize): the larger that keeps the long side within the
// long bound and the short side within the short one. 1 when scale[0] is 0 (the image's own size).
double keep_ratio_factor(int64_t height, int64_t width, const std::array<int64_t, 2>& scale);
// Refuses, naming node's `key`, a scale that is not two positive bounds or [0, 0] ([2048, 0]
// would fit every image into a short side of 0: one pixel, silently).
void check_fit_scale(const ConfigNode& node, const std::string& key, const std::array<int64_t, 2>& scale);
// Pads to at least the crop size (image with 0, mask with 255), then crops at random.
void random_crop(Sample& sample, const std::array<int64_t, 2>& crop_size, Rng& rng);
void random_flip(Sample& sample, double prob, Rng& rng);
// Brightness, contrast, saturation and hue jitter, each applied with probability 1/2
// (mmsegmentation's PhotoMetricDistortion defaults).
void photometric_distortion(cv::Mat& rgb, Rng& rng);
void apply_train_pipeline(Sample& sample, const TrainPipelineOptions& options, Rng& rng);

// [3, H, W] float32, normalised.
at::Tensor image_to_tensor(const cv::Mat& rgb, const Normalization& norm);
// [H, W] int64 class ids.
at::Tensor mask_to_tensor(const cv::Mat& mask);

TrainPipelineOptions read_train_pipeline(const ConfigNode& node);
Normalization read_normalization(const ConfigNode& data);

}  // namespace attnseg
