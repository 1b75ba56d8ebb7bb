#include "engine/demo.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>
#include <torch/autograd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <filesystem>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <string>
#include <thread>
#include <vector>

#include "attention/registry.h"
#include "core/error.h"
#include "core/runtime.h"
#include "data/transforms.h"
#include "engine/checkpoint.h"
#include "engine/evaluator.h"
#include "engine/experiment.h"
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

// ---------------------------------------------------------------------------------------
// Sources

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool is_camera_index(const std::string& source) {
  return !source.empty() && source.size() < 4 &&
         std::all_of(source.begin(), source.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class VideoSource : public FrameSource {
 public:
  explicit VideoSource(std::string source) : source_(std::move(source)) {
    camera_ = is_camera_index(source_);
    stream_ = source_.find("://") != std::string::npos;
    const bool sequence = source_.find('%') != std::string::npos;  // img_%04d.png
    if (!camera_ && !stream_ && !sequence && !fs::exists(source_)) {
      throw Error("--source " + source_ +
                  ": no such file (give a video file, a camera index or a stream URL)");
    }
    if (!open()) {
      throw Error("--source " + source_ + ": cannot open it as " +
                  (camera_ ? std::string("a camera") : std::string("a video file or stream")));
    }
  }
  bool read(cv::Mat& bgr) override { return capture_.read(bgr) && !bgr.empty(); }
  bool reopen() override {
    capture_.release();
    return open();
  }
  bool live() const override { return camera_ || stream_; }
  double fps() const override {
    const double fps = capture_.get(cv::CAP_PROP_FPS);
    return fps > 0 && fps < 1000 ? fps : 25.0;  // image sequences and some streams do not say
  }
  std::string name() const override { return source_; }

 private:
  bool open() {
    // a URL goes to FFmpeg alone: the other back ends would each log their own failure
    const bool opened = camera_   ? capture_.open(std::stoi(source_))
                        : stream_ ? capture_.open(source_, cv::CAP_FFMPEG)
                                  : capture_.open(source_);
    return opened && capture_.isOpened();
  }

  std::string source_;
  bool camera_ = false, stream_ = false;
  cv::VideoCapture capture_;
};

}  // namespace

std::unique_ptr<FrameSource> open_video_source(const std::string& source) {
  // OpenCV's back ends warn on stderr about every source they fail to open; the Error says
  // what went wrong in one line.
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", /*overwrite=*/0);  // AV_LOG_QUIET, unless the user says

  return std::make_unique<VideoSource>(source);
}

at::Tensor frame_input(const cv::Mat& bgr, const Normalization& norm) {
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return image_to_tensor(rgb, norm).unsqueeze(0);
}

// ---------------------------------------------------------------------------------------
// Models

DemoModels load_demo_models(const std::string& config, const std::string& checkpoint,
                            const std::string& blocks) {
  const Config base = Config::load(config);
  DemoModels m{read_experiment(base), {}};
  const std::string own =
      base.root().child("model").child("attention").get<std::string>("type", "none");
  m.blocks.push_back({find_block(own).name, checkpoint, m.experiment.model});
  size_t begin = 0;
  while (begin < blocks.size()) {
    size_t end = blocks.find(',', begin);
    if (end == std::string::npos) end = blocks.size();
    const std::string item = blocks.substr(begin, end - begin);
    begin = end + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      throw Error("--blocks: '" + item + "' is not name=checkpoint");
    }
    const std::string name = find_block(item.substr(0, eq), "--blocks").name;
    for (const auto& b : m.blocks) {
      if (b.name == name) throw Error("--blocks: " + name + " is loaded twice");
    }
    m.blocks.push_back(
        {name, item.substr(eq + 1),
         read_experiment(Config::load(config, {"model.attention.type=" + name})).model});
  }
  for (auto& b : m.blocks) {
    load_checkpoint(b.checkpoint, b.model);
    b.model->eval();
  }
  return m;
}

// ---------------------------------------------------------------------------------------
// Controls

KeyAction apply_key(DemoControls& c, int key, int blocks) {
  if (key < 0) return KeyAction::none;
  key &= 0xff;  // the key's character; GTK adds modifier bits above it
  auto select = [&](int b) {
    c.block = ((b % blocks) + blocks) % blocks;
    ++c.version;
  };
  auto nudge = [&](double d) {
    c.opacity = std::clamp(std::round((c.opacity.load() + d) * 10) / 10, 0.0, 1.0);
  };
  switch (key) {
    case 'n':
    case '\t':
      select(c.block + 1);
      return KeyAction::next_block;
    case 'p':
      select(c.block - 1);
      return KeyAction::previous_block;
    case ' ':
      c.paused = !c.paused;
      return KeyAction::pause;
    case '+':
    case '=':
      nudge(0.1);
      return KeyAction::opacity;
    case '-':
    case '_':
      nudge(-0.1);
      return KeyAction::opacity;
    case 's':
      return KeyAction::save;
    case 'c':
      c.clear_pin();
      return KeyAction::clear;
    case 'q':
    case 27:
      c.quit = true;
      return KeyAction::quit;
    default:
      break;
  }
  if (key >= '1' && key <= '9' && key - '1' < blocks) {
    select(key - '1');
    return KeyAction::select_block;
  }
  return KeyAction::none;
}

// ---------------------------------------------------------------------------------------
// The pipeline

namespace {

struct Captured {
  cv::Mat bgr;
  int64_t index = 0;
  Clock::time_point at;
};

// Class of each pixel of scores [1, K, H, W], CV_8U: the arg-max over K as K passes over
// contiguous planes (ATen's argmax over dim 1 took 20 ms at 640x480 here, this about 1).
cv::Mat labels_of(const at::Tensor& scores) {
  const at::Tensor planes = scores.to(at::kFloat).contiguous();
  const int64_t k = planes.size(1), h = planes.size(2), w = planes.size(3), n = h * w;
  const float* p = planes.data_ptr<float>();
  std::vector<float> best(p, p + n);
  cv::Mat labels(static_cast<int>(h), static_cast<int>(w), CV_8UC1, cv::Scalar(0));
  uint8_t* out = labels.ptr<uint8_t>();
  for (int64_t c = 1; c < k; ++c) {
    const float* plane = p + c * n;
    for (int64_t i = 0; i < n; ++i) {
      if (plane[i] > best[i]) {
        best[i] = plane[i];
        out[i] = static_cast<uint8_t>(c);
      }
    }
  }
  return labels;
}

Segmented segment_frame(DemoModels& m, int block, const Captured& f, std::optional<cv::Point> pin) {
  const auto t0 = Clock::now();
  Segmented s;
  s.bgr = f.bgr;
  s.index = f.index;
  s.captured = f.at;
  s.block = block;
  Segmentor& model = m.blocks[static_cast<size_t>(block)].model;
  const at::Tensor image = frame_input(f.bgr, m.experiment.norm);
  {
    c10::InferenceMode guard;
    const auto t1 = Clock::now();
    const at::Tensor scores = segment(model, image, m.experiment.eval);
    s.model_ms = ms_since(t1);
    s.labels = labels_of(scores);
  }
  if (pin) {
    s.pin = {std::clamp(pin->x, 0, f.bgr.cols - 1), std::clamp(pin->y, 0, f.bgr.rows - 1)};
    const at::Tensor input = block_input_of(model, image);
    const int64_t h = input.size(2), w = input.size(3);
    const int64_t row = std::min<int64_t>(h - 1, s.pin.y * h / f.bgr.rows);
    const int64_t col = std::min<int64_t>(w - 1, s.pin.x * w / f.bgr.cols);
    const at::Tensor map = influence_on(model, input, row, col).to(at::kFloat).contiguous();
    s.influence =
        cv::Mat(static_cast<int>(h), static_cast<int>(w), CV_32FC1, map.data_ptr<float>()).clone();
  }
  s.prepost_ms = ms_since(t0) - s.model_ms;
  return s;
}

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
            spdlog::warn("--source {}: no frame after {} frames, reconnecting ({}/{})",
                         source.name(), read, attempt, o.retries);
            std::this_thread::sleep_for(std::chrono::duration<double>(o.retry_wait_s));
            ok = source.reopen() && source.read(frame);
          }
          if (ok) {
            ++reconnects;
          } else {
            failure = "--source " + source.name() + ": the stream stopped after " +
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
      set_threads(models.experiment.threads);  // OpenMP's thread count is per calling thread
      while (auto f = frames.take()) {
        Segmented s = segment_frame(models, controls.block, *f, controls.pinned());
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

// ---------------------------------------------------------------------------------------
// Drawing

cv::Mat draw_segmented(const Segmented& f, const std::vector<cv::Vec3b>& palette, double opacity,
                       int zoom) {
  cv::Mat rgb, out;
  cv::cvtColor(f.bgr, rgb, cv::COLOR_BGR2RGB);
  cv::cvtColor(overlay(rgb, f.labels, palette, opacity), out, cv::COLOR_RGB2BGR);
  if (!f.influence.empty()) {
    // Cells as they are (nearest), so a block's reach shows with its true edges; colour on a
    // log scale over three decades (TURBO: blue weak, red strong), untinted where exactly zero.
    cv::Mat map, level, level8, heat;
    cv::resize(f.influence, map, out.size(), 0, 0, cv::INTER_NEAREST);
    cv::max(map, 1e-3, level);
    cv::log(level, level);
    level = level / (3 * std::log(10.0)) + 1.0;
    level.convertTo(level8, CV_8U, 255.0);
    cv::applyColorMap(level8, heat, cv::COLORMAP_TURBO);
    // weak influence tints lightly, so the frame stays readable under it
    cv::Mat weight = 0.2 + 0.6 * level, weight3, outf, heatf;
    weight.setTo(0.0, map <= 0);
    cv::merge(std::vector<cv::Mat>{weight, weight, weight}, weight3);
    out.convertTo(outf, CV_32FC3);
    heat.convertTo(heatf, CV_32FC3);
    outf = outf.mul(cv::Scalar::all(1.0) - weight3) + heatf.mul(weight3);
    outf.convertTo(out, CV_8UC3);
  }
  if (zoom > 1) cv::resize(out, out, {}, zoom, zoom, cv::INTER_NEAREST);
  if (!f.influence.empty()) {
    const cv::Point at(f.pin.x * zoom + zoom / 2, f.pin.y * zoom + zoom / 2);
    const int radius = std::max(5, out.rows / 40);
    cv::circle(out, at, radius, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
    cv::circle(out, at, radius, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
  return out;
}

void draw_caption(cv::Mat& bgr, const Segmented& f, const DemoStatus& status,
                  const std::vector<std::string>& classes, const std::vector<cv::Vec3b>& palette) {
  const double scale = std::max(0.35, bgr.rows / 900.0);
  const int line = static_cast<int>(22 * scale / 0.5);
  char text[160];
  std::snprintf(text, sizeof(text), "%s  %.1f ms  %.1f FPS  dropped %lld", status.block.c_str(),
                f.model_ms + f.prepost_ms, status.fps, static_cast<long long>(status.dropped));
  auto put = [&](const std::string& t, cv::Point at, const cv::Scalar& colour) {
    cv::putText(bgr, t, at, cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
    cv::putText(bgr, t, at, cv::FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv::LINE_AA);
  };
  put(text, {8, line}, cv::Scalar(255, 255, 255));
  for (size_t c = 0; c < classes.size(); ++c) {
    const cv::Vec3b rgb = palette[c];
    const cv::Scalar colour(rgb[2], rgb[1], rgb[0]);
    const int y = line * static_cast<int>(c + 2);
    cv::rectangle(bgr, {8, y - line / 2 - 2}, {8 + line / 2, y - 2}, colour, cv::FILLED);
    put(classes[c], {14 + line / 2, y}, cv::Scalar(255, 255, 255));
  }
}

VideoFileView::VideoFileView(std::string path, double fps, std::vector<std::string> classes,
                             std::vector<cv::Vec3b> palette)
    : path_(std::move(path)),
      fps_(fps),
      classes_(std::move(classes)),
      palette_(std::move(palette)) {
  const fs::path out(path_);
  const std::string ext = out.extension().string();
  if (ext == ".mp4") {
    fourcc_ = cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  } else if (ext == ".avi") {
    fourcc_ = cv::VideoWriter::fourcc('M', 'J', 'P', 'G');
  } else {
    throw Error("--output " + path_ + ": give a .mp4 or .avi file");
  }
  tmp_ = (out.parent_path() / (out.stem().string() + ".tmp" + ext)).string();
}

VideoFileView::~VideoFileView() {
  try {
    close();
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
  }
}

void VideoFileView::show(const Segmented& f, const DemoStatus& status) {
  cv::Mat bgr = draw_segmented(f, palette_, status.opacity);
  if (!writer_.isOpened()) {
    if (!writer_.open(tmp_, fourcc_, fps_, bgr.size())) {
      throw Error("--output " + path_ + ": cannot write a video there");
    }
    size_ = bgr.size();
  } else if (bgr.size() != size_) {  // a video has one frame size
    throw Error("--source: frame " + std::to_string(f.index + 1) + " is " +
                std::to_string(bgr.cols) + "x" + std::to_string(bgr.rows) +
                ", the ones before it " + std::to_string(size_.width) + "x" +
                std::to_string(size_.height));
  }
  draw_caption(bgr, f, status, classes_, palette_);
  writer_.write(bgr);
}

void VideoFileView::close() {
  if (!writer_.isOpened()) return;
  writer_.release();
  std::error_code ec;
  fs::rename(tmp_, path_, ec);
  if (ec) throw Error("--output " + path_ + ": " + ec.message());
}

}  // namespace attnseg
