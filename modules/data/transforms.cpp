#include "data/transforms.h"

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include <cmath>

#include "config/config.h"
#include "core/error.h"

namespace attnseg {

double keep_ratio_factor(int64_t height, int64_t width, const std::array<int64_t, 2>& scale) {
  if (scale[0] <= 0) return 1.0;
  const double long_side = static_cast<double>(std::max(height, width));
  const double short_side = static_cast<double>(std::min(height, width));
  const double target_long = static_cast<double>(std::max(scale[0], scale[1]));
  const double target_short = static_cast<double>(std::min(scale[0], scale[1]));
  return std::min(target_long / long_side, target_short / short_side);
}

void check_fit_scale(const ConfigNode& node, const std::string& key, const std::array<int64_t, 2>& scale) {
  if (scale[0] < 0 || scale[1] < 0 || (scale[0] == 0) != (scale[1] == 0)) {
    throw Error("config key " + node.where(key) + " must be [long, short] edge bounds, or [0, 0] for the image's size");
  }
}

void random_resize(Sample& sample, const TrainPipelineOptions& options, Rng& rng) {
  const double factor = rng.uniform(options.ratio_range[0], options.ratio_range[1]) *
                        keep_ratio_factor(sample.image.rows, sample.image.cols, options.scale);
  const cv::Size size(std::max(1, static_cast<int>(std::lround(sample.image.cols * factor))),
                      std::max(1, static_cast<int>(std::lround(sample.image.rows * factor))));
  if (size == sample.image.size()) return;
  cv::resize(sample.image, sample.image, size, 0, 0, cv::INTER_LINEAR);
  cv::resize(sample.mask, sample.mask, size, 0, 0, cv::INTER_NEAREST);
}

void random_crop(Sample& sample, const std::array<int64_t, 2>& crop_size, Rng& rng) {
  const int ch = static_cast<int>(crop_size[0]), cw = static_cast<int>(crop_size[1]);
  const int pad_h = std::max(0, ch - sample.image.rows), pad_w = std::max(0, cw - sample.image.cols);
  if (pad_h > 0 || pad_w > 0) {
    cv::copyMakeBorder(sample.image, sample.image, 0, pad_h, 0, pad_w, cv::BORDER_CONSTANT,
                       cv::Scalar::all(0));
    cv::copyMakeBorder(sample.mask, sample.mask, 0, pad_h, 0, pad_w, cv::BORDER_CONSTANT,
                       cv::Scalar(255));
  }
  const int y = static_cast<int>(rng.integer(0, sample.image.rows - ch));
  const int x = static_cast<int>(rng.integer(0, sample.image.cols - cw));
  const cv::Rect roi(x, y, cw, ch);
  sample.image = sample.image(roi).clone();
  sample.mask = sample.mask(roi).clone();
}

void random_flip(Sample& sample, double prob, Rng& rng) {
  if (!rng.chance(prob)) return;
  cv::flip(sample.image, sample.image, 1);
  cv::flip(sample.mask, sample.mask, 1);
}

void photometric_distortion(cv::Mat& rgb, Rng& rng) {
  constexpr double kBrightness = 32, kContrastLo = 0.5, kContrastHi = 1.5, kHue = 18;
  cv::Mat f;
  rgb.convertTo(f, CV_32FC3);
  if (rng.chance(0.5)) f += cv::Scalar::all(rng.uniform(-kBrightness, kBrightness));
  const bool contrast_first = rng.chance(0.5);
  auto contrast = [&] {
    if (rng.chance(0.5)) f *= rng.uniform(kContrastLo, kContrastHi);
  };
  if (contrast_first) contrast();
  cv::Mat clipped;
  cv::min(cv::max(f, 0.0), 255.0, clipped);
  clipped.convertTo(rgb, CV_8UC3);
  const bool saturate = rng.chance(0.5), shift_hue = rng.chance(0.5);
  if (saturate || shift_hue) {
    cv::Mat hsv;
    cv::cvtColor(rgb, hsv, cv::COLOR_RGB2HSV);  // 8-bit hue in [0, 180)
    std::vector<cv::Mat> ch;
    cv::split(hsv, ch);
    if (saturate) ch[1].convertTo(ch[1], CV_8U, rng.uniform(kContrastLo, kContrastHi));
    if (shift_hue) {
      const int delta = static_cast<int>(rng.integer(-kHue, kHue));
      ch[0].forEach<uint8_t>([delta](uint8_t& h, const int*) { h = static_cast<uint8_t>((h + delta + 180) % 180); });
    }
    cv::merge(ch, hsv);
    cv::cvtColor(hsv, rgb, cv::COLOR_HSV2RGB);
  }
  if (!contrast_first) {
    rgb.convertTo(f, CV_32FC3);
    contrast();
    cv::min(cv::max(f, 0.0), 255.0, clipped);
    clipped.convertTo(rgb, CV_8UC3);
  }
}

void apply_train_pipeline(Sample& sample, const TrainPipelineOptions& options, Rng& rng) {
  random_resize(sample, options, rng);
  random_crop(sample, options.crop_size, rng);
  random_flip(sample, options.flip_prob, rng);
  if (options.photometric) photometric_distortion(sample.image, rng);
}

at::Tensor image_to_tensor(const cv::Mat& rgb, const Normalization& norm) {
  TORCH_CHECK(rgb.type() == CV_8UC3, "image_to_tensor expects an 8-bit 3-channel image");
  cv::Mat contiguous = rgb.isContinuous() ? rgb : rgb.clone();
  at::Tensor t = at::from_blob(contiguous.data, {rgb.rows, rgb.cols, 3}, at::kByte)
                     .to(at::kFloat)
                     .permute({2, 0, 1})
                     .contiguous();
  const at::Tensor mean = at::tensor({norm.mean[0], norm.mean[1], norm.mean[2]}, at::kFloat).view({3, 1, 1});
  const at::Tensor std = at::tensor({norm.std[0], norm.std[1], norm.std[2]}, at::kFloat).view({3, 1, 1});
  return (t - mean) / std;
}

at::Tensor mask_to_tensor(const cv::Mat& mask) {
  TORCH_CHECK(mask.type() == CV_8UC1, "mask_to_tensor expects an 8-bit single-channel mask");
  cv::Mat contiguous = mask.isContinuous() ? mask : mask.clone();
  return at::from_blob(contiguous.data, {mask.rows, mask.cols}, at::kByte).to(at::kLong);
}

TrainPipelineOptions read_train_pipeline(const ConfigNode& node) {
  TrainPipelineOptions o;
  o.scale = node.get_array("scale", o.scale);
  o.ratio_range = node.get_array("ratio_range", o.ratio_range);
  o.crop_size = node.get_array("crop_size", o.crop_size);
  o.flip_prob = node.get<double>("flip_prob", o.flip_prob);
  o.photometric = node.get<bool>("photometric", o.photometric);
  node.finish();
  if (o.crop_size[0] <= 0 || o.crop_size[1] <= 0) {
    throw Error("config key " + node.where("crop_size") + " must hold positive sizes");
  }
  check_fit_scale(node, "scale", o.scale);
  if (o.ratio_range[0] <= 0 || o.ratio_range[1] < o.ratio_range[0]) {
    throw Error("config key " + node.where("ratio_range") + " must be [lo, hi] with 0 < lo <= hi");
  }
  if (o.flip_prob < 0 || o.flip_prob > 1) {
    throw Error("config key " + node.where("flip_prob") + " must be in [0, 1]");
  }
  return o;
}

Normalization read_normalization(const ConfigNode& data) {
  Normalization n;
  n.mean = data.get_array("mean", n.mean);
  n.std = data.get_array("std", n.std);
  for (double s : n.std) {
    if (s <= 0) throw Error("config key " + data.where("std") + " must be positive");
  }
  return n;
}

}  // namespace attnseg
