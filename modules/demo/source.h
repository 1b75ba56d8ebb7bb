// Where the demo's frames come from: a camera, a video file, an image sequence or a stream.
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <memory>
#include <string>

#include "data/transforms.h"

namespace attnseg {

// Where frames come from. read() returns false at the end of a file or when a live source
// stops; reopen() is a live source's attempt to reconnect.
class FrameSource {
 public:
  virtual ~FrameSource() = default;
  virtual bool read(cv::Mat& bgr) = 0;
  virtual bool reopen() = 0;
  virtual bool live() const = 0;   // a camera or stream: frames come at their own pace
  virtual double fps() const = 0;  // the source's frame rate (25 when it does not say)
  virtual std::string name() const = 0;
};

// A camera index ("0"), a video file or an image sequence ("dir/img_%04d.png"), or a stream
// URL, through OpenCV's VideoCapture. A missing file or a source that cannot be opened ends
// with an Error whose message starts with the source as given.
std::unique_ptr<FrameSource> open_video_source(const std::string& source);

// The model's input for a BGR frame: RGB, normalised, [1, 3, H, W].
at::Tensor frame_input(const cv::Mat& bgr, const Normalization& norm);

}  // namespace attnseg
