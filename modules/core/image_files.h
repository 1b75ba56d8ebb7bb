// File formats that OpenCV does not write: label maps as indexed (palette) PNGs, the form in
// which Pascal VOC and mmsegmentation store them, and arrays as NumPy .npy files.
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <string>
#include <vector>

namespace attnseg {

// A PNG of colour type 3 (indexed, 8 bits): each pixel stores its label (CV_8UC1), and the
// palette's RGB colours (at most 256, more than the largest label) are what viewers show.
// Readers that keep indices (PIL's mode "P") get the labels back;
// cv::imread gets the colours.
std::string encode_indexed_png(const cv::Mat& labels, const std::vector<cv::Vec3b>& palette);

// A NumPy .npy file (format 1.0, little-endian float32, C order) of a float tensor of any shape.
std::string encode_npy(const at::Tensor& values);

}  // namespace attnseg
