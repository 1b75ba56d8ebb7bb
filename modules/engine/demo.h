// The live demo: frames from a camera, video file or stream are segmented by one of several
// loaded blocks and shown in a window (engine/demo_window.cpp) or written to a video.
// Capture, inference and display run on their own threads and hand frames on through
// one-place slots where the newest frame wins, so a slow model shows the camera's latest
// frame instead of a growing backlog. A clicked pixel shows its influence map: which input
// pixels of the attention block its output draws from.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/experiment.h"
#include "head/segmentor.h"

namespace attnseg {

// A one-place hand-off where the newest value wins: put() never waits and replaces a value
// nobody has taken yet (counted as dropped), so a slow consumer always gets the latest
// value instead of a queue of stale ones. take() waits for a value or for close().
template <typename T>
class LatestSlot {
 public:
  // lossless: put() instead waits until the previous value has been taken (or the slot is
  // closed), so nothing is dropped: a video file read as fast as it is processed.
  explicit LatestSlot(bool lossless = false) : lossless_(lossless) {}

  void put(T value) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (lossless_) room_.wait(lock, [&] { return !value_.has_value() || closed_; });
      if (value_) ++dropped_;
      value_ = std::move(value);
      ++put_;
    }
    ready_.notify_one();
  }
  // The newest value, or nothing once the slot is closed and empty.
  std::optional<T> take() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return value_.has_value() || closed_; });
    return take_locked();
  }
  // As take(), but waits at most `timeout`; nothing when it passes.
  template <typename Duration>
  std::optional<T> take_for(Duration timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait_for(lock, timeout, [&] { return value_.has_value() || closed_; });
    return take_locked();
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
  }
  // Closed, and its last value taken.
  bool finished() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return closed_ && !value_.has_value();
  }
  int64_t dropped() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return dropped_;
  }
  int64_t put_count() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return put_;
  }

 private:
  std::optional<T> take_locked() {
    std::optional<T> out = std::move(value_);
    value_.reset();
    if (out) room_.notify_one();
    return out;
  }

  const bool lossless_;
  mutable std::mutex mutex_;
  std::condition_variable ready_, room_;
  std::optional<T> value_;
  bool closed_ = false;
  int64_t dropped_ = 0, put_ = 0;
};

// Influence of the attention block's input on its output at feature pixel (row, col), for
// one normalised image [1, 3, H, W]: |∂ Σ_c out[c, row, col] / ∂ in| summed over the input
// channels, [h, w] on the block's feature grid, divided by its maximum (all zero when the
// output does not depend on the input). Through autograd, so it is the same for every block;
// the model is left in eval mode.
at::Tensor block_influence(Segmentor& model, const at::Tensor& image, int64_t row, int64_t col);

// ---------------------------------------------------------------------------------------
// Sources

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
// with an Error naming it.
std::unique_ptr<FrameSource> open_video_source(const std::string& source);

// The model's input for a BGR frame: RGB, normalised, [1, 3, H, W].
at::Tensor frame_input(const cv::Mat& bgr, const Normalization& norm);

// ---------------------------------------------------------------------------------------
// Models

struct DemoBlock {
  std::string name, checkpoint;
  Segmentor model{nullptr};
};

// The experiment of CONFIG and the blocks the demo switches between: CONFIG's own block
// with `checkpoint`, then each "name=checkpoint" of `blocks` (comma-separated), built from
// CONFIG with model.attention.type=name. Each checkpoint must belong to its model.
struct DemoModels {
  Experiment experiment;
  std::vector<DemoBlock> blocks;
};
DemoModels load_demo_models(const std::string& config, const std::string& checkpoint,
                            const std::string& blocks);

// ---------------------------------------------------------------------------------------
// Controls: what the keys and the mouse change, read by the capture and inference threads.

struct DemoControls {
  std::atomic<int> block{0};  // index into DemoModels::blocks
  std::atomic<bool> paused{false}, quit{false};
  std::atomic<double> opacity{0.5};
  std::atomic<int64_t> pin{-1};     // the pixel whose influence is drawn: y << 32 | x; -1: none
  std::atomic<int64_t> version{0};  // counts changes a paused frame must be segmented again for

  void set_pin(int x, int y) {
    pin = (static_cast<int64_t>(y) << 32) | static_cast<uint32_t>(x);
    ++version;
  }
  void clear_pin() {
    pin = -1;
    ++version;
  }
  std::optional<cv::Point> pinned() const {
    const int64_t p = pin.load();
    if (p < 0) return std::nullopt;
    return cv::Point(static_cast<int>(p & 0xffffffff), static_cast<int>(p >> 32));
  }
};

enum class KeyAction {
  none,
  next_block,
  previous_block,
  select_block,
  pause,
  opacity,
  save,
  clear,
  quit
};

// Applies one key (as cv::waitKey returns it) to the controls of a demo with `blocks`
// blocks: n/Tab next block, p previous, 1-9 that block, space pause, +/= and - opacity by
// 0.1, s save, c clear the influence map, q/Esc quit.
KeyAction apply_key(DemoControls& controls, int key, int blocks);

// ---------------------------------------------------------------------------------------
// The pipeline

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

// ---------------------------------------------------------------------------------------
// Drawing

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
