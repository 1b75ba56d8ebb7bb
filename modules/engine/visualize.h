// Pictures of predictions: class colours and overlays on the image.
#pragma once

#include <opencv2/core.hpp>

#include <vector>

#include "data/dataset.h"

namespace attnseg {

// One colour per class: fixed distinct colours, then generated ones.
std::vector<cv::Vec3b> default_palette(size_t classes);
// The dataset's own palette (Cityscapes, VOC, ADE20K, CamVid), else default_palette.
std::vector<cv::Vec3b> class_palette(const DatasetInfo& data);
// Image (RGB) blended with the palette colours of `labels`.
cv::Mat overlay(const cv::Mat& rgb, const cv::Mat& labels, const std::vector<cv::Vec3b>& palette,
                double opacity);
// The same in OpenCV's channel order (BGR), as image files and windows take it.
cv::Mat overlay_bgr(const cv::Mat& rgb, const cv::Mat& labels, const std::vector<cv::Vec3b>& palette,
                    double opacity);

}  // namespace attnseg
