// A one-place hand-off between the demo's threads where the newest value wins, so a slow
// consumer always gets the latest frame instead of a growing backlog.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

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

}  // namespace attnseg
