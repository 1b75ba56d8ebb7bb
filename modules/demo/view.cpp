#include "demo/view.h"

#include <spdlog/spdlog.h>

#include <opencv2/imgproc.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "engine/visualize.h"

namespace attnseg {

namespace fs = std::filesystem;

cv::Mat draw_segmented(const Segmented& f, const std::vector<cv::Vec3b>& palette, double opacity,
                       int zoom) {
  cv::Mat rgb;
  cv::cvtColor(f.bgr, rgb, cv::COLOR_BGR2RGB);
  cv::Mat out = overlay_bgr(rgb, f.labels, palette, opacity);
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
  const int first_class = f.memory.empty() ? 2 : 3;
  if (!f.memory.empty()) put(f.memory, {8, 2 * line}, cv::Scalar(255, 255, 255));
  for (size_t c = 0; c < classes.size(); ++c) {
    const cv::Vec3b rgb = palette[c];
    const cv::Scalar colour(rgb[2], rgb[1], rgb[0]);
    const int y = line * static_cast<int>(c + first_class);
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
    throw Error(path_ + ": give a .mp4 or .avi file");
  }
  tmp_ = temporary_path(out).string() + ext;  // the writer picks the container by extension
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
      throw Error("output video " + path_ + ": cannot write a video there");
    }
    size_ = bgr.size();
  } else if (bgr.size() != size_) {  // a video has one frame size
    throw Error("source: frame " + std::to_string(f.index + 1) + " is " +
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
  commit_file(tmp_, path_);
}

}  // namespace attnseg
