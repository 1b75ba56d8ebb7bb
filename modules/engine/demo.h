// Pieces of the live demo (issue 5) that do not need a window: the latest-value hand-off
// between the capture, inference and display threads, and the influence map that shows,
// for one output pixel of the attention block, which input pixels it draws from.
#pragma once

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "head/segmentor.h"

namespace attnseg {

// A one-place hand-off where the newest value wins: put() never waits and replaces a value
// nobody has taken yet (counted as dropped), so a slow consumer always gets the latest
// value instead of a queue of stale ones. take() waits for a value or for close().
template <typename T>
class LatestSlot {
 public:
  void put(T value) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
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
    std::optional<T> out = std::move(value_);
    value_.reset();
    return out;
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
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
  mutable std::mutex mutex_;
  std::condition_variable ready_;
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

// The headless demo: every frame of a video file, camera index or stream URL segmented and
// written, annotated (class overlay, legend, block name, per-frame latency and FPS), to a
// video file. Frames are read, segmented and written in turn, so none is dropped and the
// output has the input's frame count (or max_frames). The output is written under a
// temporary name and renamed once closed, also when the source fails part-way, so it is
// always a complete video of the frames written.
struct DemoSettings {
  std::string config, checkpoint, source, output;
  int64_t max_frames = 0;  // 0: until the source ends
  double opacity = 0.5;
};

struct DemoStats {
  int64_t frames = 0;
  int width = 0, height = 0;
  double median_ms = 0;  // segmentation and annotation of one frame
  double seconds = 0;    // the whole run, reading and writing included
};

DemoStats run_demo_headless(const DemoSettings& settings);

}  // namespace attnseg
