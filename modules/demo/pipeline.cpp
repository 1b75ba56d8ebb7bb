#include "demo/pipeline.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>
#include <torch/autograd.h>

#include <algorithm>
#include <deque>
#include <exception>
#include <optional>
#include <thread>
#include <vector>

#include "attention/registry.h"
#include "core/error.h"
#include "core/runtime.h"
#include "demo/slot.h"
#include "engine/inference.h"
#include "engine/timing.h"

namespace attnseg {

namespace {

// The attention block's input for one normalised image, without gradients.
at::Tensor block_input_of(Segmentor& model, const at::Tensor& image) {
  torch::NoGradGuard no_grad;
  return model->head()->block_input(model->backbone()->forward(image).stage4);
}

// |∂ Σ_c block(input)[c, row, col] / ∂ input| summed over channels, max-normalised, [h, w].
at::Tensor influence_on(Segmentor& model, at::Tensor input, int64_t row, int64_t col) {
  const int64_t h = input.size(2), w = input.size(3);
  input = input.detach().requires_grad_();
  const at::Tensor out = model->head()->block()->forward(input);
  const at::Tensor grad = torch::autograd::grad({out.select(2, row).select(2, col).sum()}, {input},
                                                /*grad_outputs=*/{}, /*retain_graph=*/false,
                                                /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!grad.defined()) return at::zeros({h, w});
  const at::Tensor map = grad.abs().sum(1)[0];
  const double top = map.max().item<double>();
  return top > 0 ? map / top : map;
}

}  // namespace

at::Tensor block_influence(Segmentor& model, const at::Tensor& image, int64_t row, int64_t col) {
  model->eval();
  const at::Tensor input = block_input_of(model, image);
  const int64_t h = input.size(2), w = input.size(3);
  if (row < 0 || row >= h || col < 0 || col >= w) {
    throw Error("influence: pixel (" + std::to_string(row) + ", " + std::to_string(col) +
                ") is outside the " + std::to_string(h) + "x" + std::to_string(w) + " feature map");
  }
  return influence_on(model, input, row, col);
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Captured {
  cv::Mat bgr;
  int64_t index = 0;
  Clock::time_point at;
};

Segmented segment_frame(DemoModels& m, int block, const Captured& f, std::optional<cv::Point> pin) {
  const auto t0 = Clock::now();
  Segmented s;
  s.bgr = f.bgr;
  s.index = f.index;
  s.captured = f.at;
  s.block = block;
  const DemoBlock& chosen = m.blocks[static_cast<size_t>(block)];
  const std::string refusal =
      fixed_token_refusal(m.experiment, find_block(chosen.name).caps.needs_fixed_tokens, f.bgr.rows, f.bgr.cols);
  if (!refusal.empty()) throw Error("frame " + std::to_string(f.index + 1) + ": " + refusal);
  Segmentor model = chosen.model;
  const at::Tensor image = frame_input(f.bgr, m.experiment.norm).to(m.runtime.device);
  at::Tensor input;  // the attention block's input, from the same pass, when a pixel is pinned
  {
    // Without a pin nothing needs autograd later: inference mode. With one, the block input
    // must stay usable by autograd, which inference tensors are not.
    std::optional<c10::InferenceMode> inference;
    std::optional<torch::NoGradGuard> no_grad;
    if (pin) {
      no_grad.emplace();
    } else {
      inference.emplace();
    }
    const auto t1 = Clock::now();
    const at::Tensor scores = segment(model, image, m.experiment.eval, m.runtime, pin ? &input : nullptr);
    wait_for_device(m.runtime);
    s.model_ms = ms_since(t1);
    s.labels = class_map(scores);
  }
  if (pin) {
    s.pin = {std::clamp(pin->x, 0, f.bgr.cols - 1), std::clamp(pin->y, 0, f.bgr.rows - 1)};
    const int64_t h = input.size(2), w = input.size(3);
    const int64_t row = std::min<int64_t>(h - 1, s.pin.y * h / f.bgr.rows);
    const int64_t col = std::min<int64_t>(w - 1, s.pin.x * w / f.bgr.cols);
    const at::Tensor map = influence_on(model, input.to(at::kFloat), row, col).to(at::kCPU, at::kFloat).contiguous();
    s.influence =
        cv::Mat(static_cast<int>(h), static_cast<int>(w), CV_32FC1, map.data_ptr<float>()).clone();
  }
  s.prepost_ms = ms_since(t0) - s.model_ms;
  return s;
}

// Temporal mode's bookkeeping, kept by the inference thread: when a block's state across
// frames must be forgotten, and the line the display shows about it.
class FrameMemory {
 public:
  explicit FrameMemory(double scene_cut) : scene_cut_(scene_cut) {}

  // Before `block` segments frame f: forgets the block's state when it must not carry over
  // (another block ran last, the same frame again, a scene cut); the status line.
  std::string before(DemoModels& m, int block, const Captured& f) {
    const DemoBlock& chosen = m.blocks[static_cast<size_t>(block)];
    cv::Mat thumb;
    cv::cvtColor(f.bgr, thumb, cv::COLOR_BGR2GRAY);
    cv::resize(thumb, thumb, {64, 48}, 0, 0, cv::INTER_AREA);
    thumb.convertTo(thumb, CV_32F);
    std::string reason;
    if (block != block_) {
      reason = block_ < 0 ? "first frame" : "block switch";
    } else if (f.index == index_) {
      reason = "same frame again";
    } else if (cv::norm(thumb, thumb_, cv::NORM_L1) / static_cast<double>(thumb.total()) > scene_cut_) {
      reason = "scene cut";
    }
    block_ = block;
    index_ = f.index;
    thumb_ = thumb;
    const AttentionBlock attention = chosen.model->head()->block();
    if (!attention->temporal_capable()) return "memory: none (" + chosen.name + " keeps no state across frames)";
    if (!reason.empty()) {
      attention->reset_temporal();
      carried_ = 0;
      return "memory reset: " + reason;
    }
    ++carried_;
    return "memory: carried over " + std::to_string(carried_) + (carried_ == 1 ? " frame" : " frames");
  }

 private:
  double scene_cut_;
  int block_ = -1;
  int64_t index_ = -1;
  cv::Mat thumb_;
  int64_t carried_ = 0;
};

// Temporal mode on for the run's blocks that have it, and off again when the run ends, so that
// the models the caller keeps are left as they came.
class TemporalModeGuard {
 public:
  TemporalModeGuard(DemoModels& m, bool on) : models_(m), on_(on) { apply(on_); }
  ~TemporalModeGuard() {
    if (on_) apply(false);
  }
  TemporalModeGuard(const TemporalModeGuard&) = delete;
  TemporalModeGuard& operator=(const TemporalModeGuard&) = delete;

 private:
  void apply(bool on) {
    for (auto& b : models_.blocks) {
      const AttentionBlock attention = b.model->head()->block();
      if (!attention->temporal_capable()) continue;
      attention->set_temporal(on);
      attention->reset_temporal();
    }
  }
  DemoModels& models_;
  bool on_;
};

double median_of(std::vector<double> v) {
  return v.empty() ? 0.0 : percentile(std::move(v), 0.5);
}

}  // namespace

DemoStats run_demo(DemoModels& models, FrameSource& source, DemoView& view, DemoControls& controls,
                   const DemoRunOptions& o) {
  LatestSlot<Captured> frames(o.lossless);
  LatestSlot<Segmented> results(o.lossless);
  std::exception_ptr capture_error, inference_error;
  std::string failure;  // written by the capture thread, read after it is joined
  std::vector<double> read_ms, model_ms, prepost_ms, show_ms, latency_ms;
  int64_t read = 0, reconnects = 0;
  const int blocks = static_cast<int>(models.blocks.size());
  const TemporalModeGuard temporal(models, o.temporal);

  std::thread capture([&] {
    try {
      const double fps = source.fps();
      auto pace_start = Clock::now();
      int64_t paced = 0;  // frames read since pace_start
      Captured last;
      int64_t seen_version = controls.version;
      while (!controls.quit && (o.max_frames <= 0 || read < o.max_frames)) {
        if (controls.paused) {
          cv::Mat discard;
          if (source.live())
            source.read(discard);  // keeps the camera's own buffer fresh
          else
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          if (controls.version != seen_version && !last.bgr.empty()) {  // a block or pixel changed
            seen_version = controls.version;
            frames.put(last);
          }
          pace_start = Clock::now();
          paced = 0;
          continue;
        }
        cv::Mat frame;  // a new buffer for each frame: the slots pass frames on, not copies
        const auto t0 = Clock::now();
        bool ok = source.read(frame);
        if (!ok && source.live()) {
          for (int attempt = 1; attempt <= o.retries && !ok && !controls.quit; ++attempt) {
            spdlog::warn("source {}: no frame after {} frames, reconnecting ({}/{})",
                         source.name(), read, attempt, o.retries);
            std::this_thread::sleep_for(std::chrono::duration<double>(o.retry_wait_s));
            ok = source.reopen() && source.read(frame);
          }
          if (ok) {
            ++reconnects;
          } else {
            failure = "source " + source.name() + ": the stream stopped after " +
                      std::to_string(read) + " frames and did not come back after " +
                      std::to_string(o.retries) + " tries";
          }
        }
        if (!ok && o.loop && !source.live() && read > 0)
          ok = source.reopen() && source.read(frame);  // again
        if (!ok) break;
        read_ms.push_back(ms_since(t0));
        if (o.paced)
          std::this_thread::sleep_until(pace_start + std::chrono::duration<double>(paced / fps));
        ++paced;
        last = {frame, read++, Clock::now()};
        seen_version = controls.version;
        frames.put(last);
      }
    } catch (...) {
      capture_error = std::current_exception();
      controls.quit = true;
    }
    frames.close();
  });

  std::thread inference([&] {
    try {
      set_threads(models.runtime.threads);  // OpenMP's thread count is per calling thread
      std::optional<FrameMemory> memory;
      if (o.temporal) memory.emplace(o.scene_cut);
      while (auto f = frames.take()) {
        const int block = controls.block;
        const std::string memory_line = memory ? memory->before(models, block, *f) : "";
        Segmented s = segment_frame(models, block, *f, controls.pinned());
        s.memory = memory_line;
        model_ms.push_back(s.model_ms);
        prepost_ms.push_back(s.prepost_ms);
        results.put(std::move(s));
      }
    } catch (...) {
      inference_error = std::current_exception();
      controls.quit = true;
    }
    frames.close();  // a lossless capture waiting for room gives up
    results.close();
  });

  DemoStats stats;
  std::optional<Segmented> last;
  DemoStatus status;
  status.blocks = blocks;
  std::deque<Clock::time_point> shown_at;  // the last second's displays, for the FPS
  Clock::time_point first{};
  auto update_status = [&] {
    status.block_index = last ? last->block : controls.block.load();
    status.block = models.blocks[static_cast<size_t>(status.block_index)].name;
    status.dropped = frames.dropped() + results.dropped();
    status.opacity = controls.opacity;
    status.paused = controls.paused;
  };
  std::exception_ptr display_error;
  try {
    while (true) {
      if (auto r = results.take_for(std::chrono::milliseconds(15))) {
        const auto t0 = Clock::now();
        // a paused frame segmented again (another block or pixel) is not a new frame
        const bool again = last && r->index == last->index;
        last = std::move(r);
        update_status();
        if (!again) {
          if (stats.shown == 0) first = t0;
          shown_at.push_back(t0);
          while (shown_at.size() > 2 && t0 - shown_at.front() > std::chrono::seconds(1))
            shown_at.pop_front();
        }
        const double span =
            std::chrono::duration<double>(shown_at.back() - shown_at.front()).count();
        status.fps = span > 0 ? (shown_at.size() - 1) / span : 0.0;
        view.show(*last, status);
        if (!again) {
          show_ms.push_back(ms_since(t0));
          latency_ms.push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - last->captured).count());
          ++stats.shown;
        }
        stats.width = last->bgr.cols;
        stats.height = last->bgr.rows;
        if (o.max_frames > 0 && stats.shown >= o.max_frames) controls.quit = true;
      } else if (results.finished()) {
        break;
      }
      const double opacity = status.opacity;
      const bool paused = status.paused;
      const bool save = view.poll(controls);
      if (last &&
          (controls.opacity != opacity || controls.paused != paused)) {  // redraw a still frame
        update_status();
        view.show(*last, status);
      }
      if (save && last) view.save(*last, status);
      if (controls.quit) break;
    }
  } catch (...) {
    display_error = std::current_exception();
  }
  controls.quit = true;
  frames.close();
  results.close();
  capture.join();
  inference.join();
  if (display_error) std::rethrow_exception(display_error);
  if (capture_error) std::rethrow_exception(capture_error);
  if (inference_error) std::rethrow_exception(inference_error);

  stats.read = read;
  stats.dropped = read - stats.shown;
  stats.reconnects = reconnects;
  stats.failure = failure;
  if (last) {
    stats.last_frame = last->bgr;
    stats.last_block = last->block;
  }
  if (stats.shown > 1) {
    stats.seconds = std::chrono::duration<double>(shown_at.back() - first).count();
    stats.fps = (stats.shown - 1) / stats.seconds;
  }
  stats.read_ms = median_of(read_ms);
  stats.model_ms = median_of(model_ms);
  stats.prepost_ms = median_of(prepost_ms);
  stats.show_ms = median_of(show_ms);
  stats.latency_ms = median_of(latency_ms);
  return stats;
}

}  // namespace attnseg
