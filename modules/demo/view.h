// How the demo draws a segmented frame, and the view that writes them to a video file.
#pragma once

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <string>
#include <vector>

#include "demo/pipeline.h"

namespace attnseg {

// The frame with the class overlay at `opacity` and, when present, the influence map blended
// over it as a heat map (log scale from 1e-3 to 1 of the maximum, TURBO colours: blue weak,
// red strong; untinted where the influence is exactly zero) with the pinned pixel ringed.
// BGR, the frame's size times `zoom` (nearest neighbour, before the ring is drawn).
cv::Mat draw_segmented(const Segmented& frame, const std::vector<cv::Vec3b>& palette,
                       double opacity, int zoom = 1);
// The headless layout: block, latency and FPS, dropped frames and the legend written over the
// top-left corner of `bgr`.
void draw_caption(cv::Mat& bgr, const Segmented& frame, const DemoStatus& status,
                  const std::vector<std::string>& classes, const std::vector<cv::Vec3b>& palette);

// Writes the annotated frames to a video file (.mp4 or .avi) under a temporary name that
// close() renames to `path`, so the file is always a whole video of the frames written.
class VideoFileView : public DemoView {
 public:
  VideoFileView(std::string path, double fps, std::vector<std::string> classes,
                std::vector<cv::Vec3b> palette);
  ~VideoFileView() override;
  void show(const Segmented& frame, const DemoStatus& status) override;
  void close();

 private:
  std::string path_, tmp_;
  int fourcc_;
  double fps_;
  std::vector<std::string> classes_;
  std::vector<cv::Vec3b> palette_;
  cv::VideoWriter writer_;  // opened at the first frame, whose size it takes
  cv::Size size_;
};

// The window: the frame (enlarged for small sources) above a panel with the status, the
// legend and the keys; keys and clicks change `controls`; `s` writes the frame, its mask and
// the view as PNGs into `save_dir`. Throws when there is no display to open a window on.
std::unique_ptr<DemoView> open_window_view(const std::string& title,
                                           const std::vector<std::string>& classes,
                                           const std::vector<cv::Vec3b>& palette,
                                           const std::string& save_dir);

}  // namespace attnseg
