// What the demo's keys and mouse change, read by the capture and inference threads.
#pragma once

#include <opencv2/core.hpp>

#include <atomic>
#include <cstdint>
#include <optional>

namespace attnseg {

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

}  // namespace attnseg
