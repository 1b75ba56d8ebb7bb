#include "demo/window.h"

#include <opencv2/highgui.hpp>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "demo/display.h"
#include "demo/view.h"

namespace attnseg {

namespace {

namespace fs = std::filesystem;

constexpr double kTextScale = 0.5;
constexpr int kLine = 22;  // panel line height in pixels at kTextScale

void put_text(cv::Mat& img, const std::string& text, cv::Point at,
              const cv::Scalar& colour = {235, 235, 235}) {
  cv::putText(img, text, at, cv::FONT_HERSHEY_SIMPLEX, kTextScale, colour, 1, cv::LINE_AA);
}

int text_width(const std::string& text) {
  int baseline = 0;
  return cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, kTextScale, 1, &baseline).width;
}

class WindowView : public DemoView {
 public:
  WindowView(std::string title, std::vector<std::string> classes, std::vector<cv::Vec3b> palette,
             std::string save_dir)
      : title_(std::move(title)),
        classes_(std::move(classes)),
        palette_(std::move(palette)),
        save_dir_(std::move(save_dir)) {
    // GUI_NORMAL: no toolbar, zoom or context menu (Qt back end), so clicks reach the demo
    cv::namedWindow(title_, cv::WINDOW_AUTOSIZE | cv::WINDOW_GUI_NORMAL);
    cv::setMouseCallback(title_, &WindowView::on_mouse, this);
  }
  ~WindowView() override { cv::destroyWindow(title_); }

  void show(const Segmented& f, const DemoStatus& status) override {
    if (zoom_ == 0)
      zoom_ = std::clamp(960 / std::max(1, f.bgr.cols), 1, 4);  // small sources enlarged
    frame_size_ = f.bgr.size();
    const cv::Mat picture = draw_segmented(f, palette_, status.opacity, zoom_);
    view_ = cv::Mat(picture.rows + panel_height(picture.cols), picture.cols, CV_8UC3,
                    cv::Scalar(32, 32, 32));
    picture.copyTo(view_(cv::Rect(0, 0, picture.cols, picture.rows)));
    draw_panel(f, status, picture.rows);
    blocks_ = status.blocks;
    cv::imshow(title_, view_);
  }

  bool poll(DemoControls& controls) override {
    controls_ = &controls;
    const int key = cv::waitKey(1);
    const KeyAction action = apply_key(controls, key, blocks_);
    if (cv::getWindowProperty(title_, cv::WND_PROP_VISIBLE) < 1)
      controls.quit = true;  // closed by the user
    return action == KeyAction::save;
  }

  void save(const Segmented& f, const DemoStatus& status) override {
    std::error_code ec;
    fs::create_directories(save_dir_, ec);
    if (!fs::is_directory(save_dir_)) throw Error("save directory " + save_dir_ + ": cannot create it");
    char stem[160];
    std::snprintf(stem, sizeof(stem), "%s_%06lld", status.block.c_str(),
                  static_cast<long long>(f.index));
    fs::path base = fs::path(save_dir_) / stem;
    for (int k = 2; fs::exists(base.string() + "_view.png"); ++k) {  // saved before: keep both
      base = fs::path(save_dir_) / (std::string(stem) + "_" + std::to_string(k));
    }
    write_png_atomically(base.string() + "_frame.png", f.bgr);
    write_png_atomically(base.string() + "_mask.png", f.labels);
    write_png_atomically(base.string() + "_view.png", view_);
    spdlog::info("saved {}_frame.png, _mask.png (class ids) and _view.png", base.string());
  }

 private:
  static void on_mouse(int event, int x, int y, int /*flags*/, void* self_ptr) {
    auto* self = static_cast<WindowView*>(self_ptr);
    if (self->controls_ == nullptr || self->zoom_ == 0) return;
    const int fx = x / self->zoom_, fy = y / self->zoom_;
    const bool on_frame =
        fx >= 0 && fy >= 0 && fx < self->frame_size_.width && fy < self->frame_size_.height;
    if (event == cv::EVENT_LBUTTONDOWN && on_frame) self->controls_->set_pin(fx, fy);
    if (event == cv::EVENT_RBUTTONDOWN) self->controls_->clear_pin();
  }

  // Legend entries laid out in rows across the panel's width.
  std::vector<std::vector<size_t>> legend_rows(int width) const {
    std::vector<std::vector<size_t>> rows(1);
    int x = 8;
    for (size_t c = 0; c < classes_.size(); ++c) {
      const int w = 16 + text_width(classes_[c]) + 18;
      if (x + w > width && !rows.back().empty()) {
        rows.emplace_back();
        x = 8;
      }
      rows.back().push_back(c);
      x += w;
    }
    return rows;
  }

  int panel_height(int width) const {
    return kLine * static_cast<int>(2 + legend_rows(width).size()) + 8;
  }

  void draw_panel(const Segmented& f, const DemoStatus& status, int top) {
    char text[256];
    std::snprintf(text, sizeof(text),
                  "%s (%d/%d)   %.1f ms   %.1f FPS   dropped %lld   opacity %.1f%s",
                  status.block.c_str(), status.block_index + 1, status.blocks,
                  f.model_ms + f.prepost_ms, status.fps, static_cast<long long>(status.dropped),
                  status.opacity, status.paused ? "   PAUSED" : "");
    int y = top + kLine;
    put_text(view_, text, {8, y});
    for (const auto& row : legend_rows(view_.cols)) {
      y += kLine;
      int x = 8;
      for (size_t c : row) {
        const cv::Vec3b rgb = palette_[c];
        cv::rectangle(view_, {x, y - 12}, {x + 12, y}, cv::Scalar(rgb[2], rgb[1], rgb[0]),
                      cv::FILLED);
        put_text(view_, classes_[c], {x + 16, y});
        x += 16 + text_width(classes_[c]) + 18;
      }
    }
    y += kLine;
    if (f.influence.empty()) {
      put_text(view_, "n/p/1-9 block  space pause  +/- opacity  s save  click: influence  q quit",
               {8, y}, {170, 170, 170});
      return;
    }
    // the heat map's scale, then what it shows
    const std::string label =
        "influence on " + status.block + "'s output at the ringed pixel   1e-3";
    put_text(view_, label, {8, y}, {170, 170, 170});
    const int x0 = 8 + text_width(label) + 6, width = 120;
    cv::Mat ramp(1, width, CV_8UC1);
    for (int i = 0; i < width; ++i)
      ramp.at<uint8_t>(0, i) = static_cast<uint8_t>(255 * i / (width - 1));
    cv::Mat bar;
    cv::applyColorMap(ramp, bar, cv::COLORMAP_TURBO);
    cv::resize(bar, bar, {width, 12}, 0, 0, cv::INTER_NEAREST);
    if (x0 + width + 120 <= view_.cols) {
      bar.copyTo(view_(cv::Rect(x0, y - 11, width, 12)));
      put_text(view_, "1   (c: clear)", {x0 + width + 6, y}, {170, 170, 170});
    }
  }

  std::string title_;
  std::vector<std::string> classes_;
  std::vector<cv::Vec3b> palette_;
  std::string save_dir_;
  DemoControls* controls_ = nullptr;
  int zoom_ = 0, blocks_ = 1;
  cv::Size frame_size_;
  cv::Mat view_;
};

}  // namespace

std::unique_ptr<DemoView> open_window_view(const std::string& title,
                                           const std::vector<std::string>& classes,
                                           const std::vector<cv::Vec3b>& palette,
                                           const std::string& save_dir) {
  const std::string problem = display_problem();
  if (!problem.empty()) throw Error("demo: " + problem);
  return std::make_unique<WindowView>(title, classes, palette, save_dir);
}

}  // namespace attnseg
