// The live demo: frames from a camera, video file or stream are segmented by one of several
// loaded blocks and shown in a window (demo/window.h) or written to a video (demo/view.h).
// Capture, inference and display run on their own threads and hand frames on through
// one-place slots where the newest frame wins (demo/slot.h), so a slow model shows the
// camera's latest frame instead of a growing backlog. A clicked pixel shows its influence
// map: which input pixels of the attention block its output draws from.
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "demo/controls.h"
#include "demo/models.h"
#include "demo/source.h"

namespace attnseg {

// Influence of the attention block's input on its output at feature pixel (row, col), for
// one normalised image [1, 3, H, W]: |∂ Σ_c out[c, row, col] / ∂ in| summed over the input
// channels, [h, w] on the block's feature grid, divided by its maximum (all zero when the
// output does not depend on the input). Through autograd, so it is the same for every block;
// the model is left in eval mode.
at::Tensor block_influence(Segmentor& model, const at::Tensor& image, int64_t row, int64_t col);

// One frame after inference.
struct Segmented {
  cv::Mat bgr;        // the frame as read
  cv::Mat labels;     // CV_8U class per pixel
  cv::Mat influence;  // CV_32F on the block's feature grid, max 1; empty without a pin
  cv::Point pin{-1, -1};
  int block = 0;
  int64_t index = 0;      // frame number in the source, from 0
  double model_ms = 0;    // the model's forward alone (what `attnseg bench --model` times)
  double prepost_ms = 0;  // colour conversion, normalisation, arg-max (and the influence map)
  std::string memory;     // temporal mode: what the block remembered of earlier frames ("" when off)
  std::chrono::steady_clock::time_point captured;
};

// What the display shows beside a frame.
struct DemoStatus {
  std::string block;
  int block_index = 0, blocks = 1;
  double fps = 0;       // frames shown per second, over the last second or so
  int64_t dropped = 0;  // frames read but never shown
  double opacity = 0.5;
  bool paused = false;
};

// Where segmented frames go: a window or a video file.
class DemoView {
 public:
  virtual ~DemoView() = default;
  virtual void show(const Segmented& frame, const DemoStatus& status) = 0;
  // Window events since the last call, applied to `controls`; true when `s` asked to save
  // the frame on show. A view without a window has none.
  virtual bool poll(DemoControls& /*controls*/) { return false; }
  virtual void save(const Segmented& /*frame*/, const DemoStatus& /*status*/) {}
};

struct DemoRunOptions {
  int64_t max_frames = 0;  // stop after showing this many (0: until the source ends)
  bool lossless = false;   // no frame dropped: each waits for the one before (files, headless)
  bool paced = false;      // read a file at its own frame rate, as a camera delivers frames
  bool loop = false;       // start a file again at its end
  int retries = 5;         // reconnection attempts of a live source that stops
  double retry_wait_s = 1.0;
  // Blocks with temporal state (AttentionBlockImpl::temporal_capable) carry it from frame to
  // frame, forgetting it on a block switch, on the same frame segmented again (paused) and on
  // a scene cut: a mean absolute difference of the frames' 64×48 grey thumbnails above
  // `scene_cut` (0–255).
  bool temporal = false;
  double scene_cut = 40.0;
};

struct DemoStats {
  int64_t read = 0, shown = 0, dropped = 0, reconnects = 0;
  int width = 0, height = 0;
  double seconds = 0, fps = 0;  // first to last frame shown, and frames shown per second in it
  double read_ms = 0, model_ms = 0, prepost_ms = 0, show_ms = 0;  // medians per frame
  double latency_ms = 0;  // median time from a frame's read to its display
  std::string failure;    // why the source ended early ("" when it ended normally)
  cv::Mat last_frame;     // the last frame shown, as read
  int last_block = 0;
};

// Runs capture, inference and display until the source ends, `max_frames` are shown or
// the controls say quit. The view is driven from the calling thread (a window must be).
DemoStats run_demo(DemoModels& models, FrameSource& source, DemoView& view, DemoControls& controls,
                   const DemoRunOptions& options);

}  // namespace attnseg
