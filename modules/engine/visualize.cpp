#include "engine/visualize.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "core/rng.h"

namespace attnseg {

std::vector<cv::Vec3b> default_palette(size_t classes) {
  static const std::vector<cv::Vec3b> fixed{
      {0, 0, 0},     {230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
      {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}, {210, 245, 60},
      {250, 190, 212}, {0, 128, 128}, {220, 190, 255}, {170, 110, 40}, {255, 250, 200},
      {128, 0, 0},   {170, 255, 195}, {128, 128, 0}, {255, 215, 180}, {0, 0, 128}};
  std::vector<cv::Vec3b> palette;
  Rng rng(0xC0104);
  for (size_t i = 0; i < classes; ++i) {
    palette.push_back(i < fixed.size() ? fixed[i]
                                       : cv::Vec3b(static_cast<uint8_t>(rng.integer(0, 255)),
                                                   static_cast<uint8_t>(rng.integer(0, 255)),
                                                   static_cast<uint8_t>(rng.integer(0, 255))));
  }
  return palette;
}

std::vector<cv::Vec3b> class_palette(const DatasetInfo& data) {
  return data.palette.empty() ? default_palette(data.class_names.size()) : data.palette;
}

cv::Mat overlay(const cv::Mat& rgb, const cv::Mat& labels, const std::vector<cv::Vec3b>& palette,
                double opacity) {
  cv::Mat colour(rgb.size(), CV_8UC3);
  for (int y = 0; y < labels.rows; ++y) {
    for (int x = 0; x < labels.cols; ++x) {
      const uint8_t k = labels.at<uint8_t>(y, x);
      colour.at<cv::Vec3b>(y, x) = k < palette.size() ? palette[k] : cv::Vec3b(0, 0, 0);
    }
  }
  cv::Mat out;
  cv::addWeighted(rgb, 1.0 - opacity, colour, opacity, 0.0, out);
  return out;
}

cv::Mat overlay_bgr(const cv::Mat& rgb, const cv::Mat& labels, const std::vector<cv::Vec3b>& palette,
                    double opacity) {
  cv::Mat bgr;
  cv::cvtColor(overlay(rgb, labels, palette, opacity), bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

}  // namespace attnseg
