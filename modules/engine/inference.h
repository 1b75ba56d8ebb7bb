// Inference with a trained model: class scores of one image (whole, or in sliding windows,
// optionally flip-averaged and multi-scale), the class of each pixel, and the speed of one
// forward and of the whole inference.
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <array>
#include <string>

#include "core/device.h"
#include "engine/experiment.h"

namespace attnseg {

// Class scores [1, K, H, W] for one normalised image [1, 3, H, W] on the model's device,
// under the runtime's precision; with several views (eval.scales, eval.flip), the logarithm of
// the views' averaged probabilities, in float (a softmax gives that average). With
// `block_input`, also what the attention block received for the whole image: from the same
// pass for one whole-image view at the image's own size, from a pass of the backbone alone
// otherwise (no single pass sees the whole image then).
at::Tensor segment(Segmentor& model, const at::Tensor& image, const EvalSettings& settings,
                   const Runtime& runtime = Runtime{}, at::Tensor* block_input = nullptr);

// `t` [B, C, H, W] resized bilinearly (corners not aligned) to `size` [height, width]; `t`
// itself when it has that size already.
at::Tensor resized(const at::Tensor& t, const std::array<int64_t, 2>& size);

// How `segment` infers under `settings`, for logs and reports: "whole inference", or "slide
// inference (512x512 windows, stride 341x341)", then ", fitted to 2048x512", ", flip" and
// ", scales 0.75, 1, 1.25".
std::string describe_inference(const EvalSettings& settings);

// The class of each pixel of scores [1, K, H, W], CV_8U (at most 255 classes): the arg-max
// over K as K passes over contiguous planes (ATen 1.13's argmax over dim 1 took 20 ms at
// 640x480 here, this about 1).
cv::Mat class_map(const at::Tensor& scores);

// The model's forwards `segment` makes of one h x w image under `settings`: over the ratios of
// eval.scales, the windows of each view (one in whole mode; in slide mode mmsegmentation's grid,
// ceil((h - crop) / stride) + 1 rows and as many columns by the width), twice with eval.flip.
int64_t forwards_per_image(const EvalSettings& settings, int64_t h, int64_t w);

struct SpeedResult {
  double median_ms = 0, p25_ms = 0, p75_ms = 0, fps = 0;  // fps: images per second
  std::array<int64_t, 2> resolution{0, 0};  // height, width
  int64_t forwards = 1;                      // the model's forwards in one timed run
  int threads = 0;
  std::string device, precision;  // "cpu", "fp32"
};

// Median forward latency of `model` on `image` after warm-up, in eval and inference mode
// under the runtime's precision; every run waits for its result, so a GPU is timed whole.
SpeedResult measure_speed(Segmentor& model, const at::Tensor& image, int64_t warmup, int64_t runs,
                          const Runtime& runtime = Runtime{});

// The same for the whole of `segment` on `image` under `settings`: every view and window,
// the resizing and the averaging, as an evaluation or the demo infers.
SpeedResult measure_inference_speed(Segmentor& model, const at::Tensor& image, const EvalSettings& settings,
                                    int64_t warmup, int64_t runs, const Runtime& runtime = Runtime{});

}  // namespace attnseg
