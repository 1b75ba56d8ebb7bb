// A small MJPEG video for the demo tests, and reading one back frame by frame.
#pragma once

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <filesystem>
#include <vector>

namespace attnseg::test {

// `frames` frames of 320×96: a white disc moving right over grey.
inline void write_test_video(const std::filesystem::path& file, int frames) {
  cv::VideoWriter writer(file.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10, cv::Size(320, 96));
  ASSERT_TRUE(writer.isOpened()) << file;
  for (int i = 0; i < frames; ++i) {
    cv::Mat frame(96, 320, CV_8UC3, cv::Scalar(90, 90, 90));
    cv::circle(frame, {20 + 25 * i, 48}, 14, cv::Scalar(255, 255, 255), cv::FILLED);
    writer.write(frame);
  }
}

inline std::vector<cv::Mat> read_video(const std::filesystem::path& file) {
  cv::VideoCapture capture(file.string());
  std::vector<cv::Mat> frames;
  for (cv::Mat frame; capture.read(frame) && !frame.empty();) frames.push_back(frame.clone());
  return frames;
}

}  // namespace attnseg::test
