// The demo's window (OpenCV highgui): the segmented frame, enlarged when the source is small,
// above a panel with the status, the legend and the keys.
#pragma once

#include <opencv2/core.hpp>

#include <memory>
#include <string>
#include <vector>

#include "demo/pipeline.h"

namespace attnseg {

// The window: keys and clicks change the controls; `s` writes the frame, its mask and the
// view as PNGs into `save_dir`. Throws when there is no display to open a window on
// (demo/display.h says why).
std::unique_ptr<DemoView> open_window_view(const std::string& title,
                                           const std::vector<std::string>& classes,
                                           const std::vector<cv::Vec3b>& palette,
                                           const std::string& save_dir);

}  // namespace attnseg
