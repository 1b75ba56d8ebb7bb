#include "engine/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace attnseg::plot {

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), pattern, value);
  return text;
}

cv::Scalar colour(size_t i) {
  static const std::vector<cv::Scalar> colours{
      {180, 119, 31}, {14, 127, 255}, {44, 160, 44},  {40, 39, 214},   {189, 103, 148}, {75, 86, 140},
      {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}, {0, 0, 128},     {128, 128, 0},
      {0, 100, 0},     {130, 0, 75}};
  return colours[i % colours.size()];
}

cv::Size text_size(const std::string& text, double scale, int thickness) {
  int baseline = 0;
  const cv::Size s = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  return {s.width, s.height + baseline};
}

void put_text(cv::Mat& image, const std::string& text, cv::Point corner, double scale, const cv::Scalar& c,
              int thickness) {
  int baseline = 0;
  const cv::Size s = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  cv::putText(image, text, {corner.x, corner.y + s.height}, kFont, scale, c, thickness, cv::LINE_AA);
}

void put_vertical_text(cv::Mat& image, const std::string& text, cv::Point centre, double scale) {
  const cv::Size s = text_size(text, scale);
  cv::Mat strip(s.height + 4, s.width + 4, CV_8UC3, kWhite);
  put_text(strip, text, {2, 2}, scale, kBlack);
  cv::Mat turned;
  cv::rotate(strip, turned, cv::ROTATE_90_COUNTERCLOCKWISE);
  const cv::Rect where(centre.x - turned.cols / 2, centre.y - turned.rows / 2, turned.cols, turned.rows);
  turned.copyTo(image(where & cv::Rect(0, 0, image.cols, image.rows)));
}

std::vector<double> nice_ticks(double lo, double hi, int count) {
  const double raw = (hi - lo) / std::max(count, 1);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * power;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + 1e-9 * step; t += step) ticks.push_back(t);
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> ticks;
  for (int e = static_cast<int>(std::floor(std::log10(lo))); e <= static_cast<int>(std::ceil(std::log10(hi))); ++e) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double t = m * std::pow(10.0, e);
      if (t >= lo && t <= hi) ticks.push_back(t);
    }
  }
  return ticks;
}

std::string tick_text(double v) {
  char text[32];
  if (std::abs(v) >= 1000) {
    std::snprintf(text, sizeof(text), "%.0f", v);
  } else if (std::abs(v - std::round(v)) < 1e-9) {
    std::snprintf(text, sizeof(text), "%.0f", v);
  } else {
    std::snprintf(text, sizeof(text), "%.3g", v);
  }
  return text;
}

void draw_axes(cv::Mat& image, const Axes& a, const std::vector<double>& xt, const std::vector<double>& yt,
               const std::string& x_title, const std::string& y_title, const std::string& title,
               const std::vector<std::string>& x_names) {
  for (size_t k = 0; k < xt.size(); ++k) {
    const double t = xt[k];
    const cv::Point p = a.map(t, a.y0);
    cv::line(image, {p.x, a.plot.y}, {p.x, a.plot.y + a.plot.height}, kGrid, 1);
    const std::string text = k < x_names.size() ? x_names[k] : tick_text(t);
    const cv::Size s = text_size(text, 0.45);
    put_text(image, text, {p.x - s.width / 2, a.plot.y + a.plot.height + 8}, 0.45, kAxis);
  }
  for (double t : yt) {
    const cv::Point p = a.map(a.x0, t);
    cv::line(image, {a.plot.x, p.y}, {a.plot.x + a.plot.width, p.y}, kGrid, 1);
    const std::string text = tick_text(t);
    const cv::Size s = text_size(text, 0.45);
    put_text(image, text, {a.plot.x - s.width - 8, p.y - s.height / 2}, 0.45, kAxis);
  }
  cv::rectangle(image, a.plot, kAxis, 1);
  const cv::Size xs = text_size(x_title, 0.55);
  put_text(image, x_title, {a.plot.x + a.plot.width / 2 - xs.width / 2, a.plot.y + a.plot.height + 36}, 0.55,
           kBlack);
  put_vertical_text(image, y_title, {a.plot.x - 62, a.plot.y + a.plot.height / 2}, 0.55);
  const cv::Size ts = text_size(title, 0.6);
  put_text(image, title, {image.cols / 2 - ts.width / 2, 14}, 0.6, kBlack, 1);
}

void add_line_obstacles(const std::vector<cv::Point>& line, std::vector<cv::Rect>& obstacles) {
  for (size_t k = 1; k < line.size(); ++k) {
    const cv::Point p = line[k - 1], q = line[k];
    const double length = std::max(1.0, std::hypot(q.x - p.x, q.y - p.y));
    for (double t = 0; t <= length; t += 3) {
      const cv::Point c = p + (q - p) * (t / length);
      obstacles.emplace_back(c.x - 2, c.y - 2, 5, 5);
    }
  }
}

std::vector<cv::Rect> place_labels(const std::vector<cv::Point>& anchors, const std::vector<cv::Size>& sizes,
                                   const cv::Rect& area, int marker_radius, const std::vector<cv::Rect>& obstacles) {
  std::vector<cv::Rect> placed;
  const int gap = marker_radius + 3;
  for (size_t i = 0; i < anchors.size(); ++i) {
    const cv::Point p = anchors[i];
    const cv::Size s = sizes[i];
    auto free = [&](const cv::Rect& box) {
      if ((box & area) != box) return false;
      for (const auto& other : placed) {
        if ((box & other).area() > 0) return false;
      }
      for (const auto& o : obstacles) {
        if ((box & o).area() > 0) return false;
      }
      for (const auto& q : anchors) {
        const cv::Rect marker(q.x - marker_radius, q.y - marker_radius, 2 * marker_radius + 1, 2 * marker_radius + 1);
        if ((box & marker).area() > 0) return false;
      }
      return true;
    };
    cv::Rect chosen;
    bool found = false;
    // Rings of candidate positions, nearest first: right, left, above, below, then diagonals.
    for (int ring = 0; ring < 40 && !found; ++ring) {
      const int dx = gap + ring * 6, dy = gap + ring * 6;
      const std::vector<cv::Point> corners{
          {p.x + dx, p.y - s.height / 2},          {p.x - dx - s.width, p.y - s.height / 2},
          {p.x - s.width / 2, p.y - dy - s.height}, {p.x - s.width / 2, p.y + dy},
          {p.x + dx, p.y - dy - s.height},          {p.x + dx, p.y + dy},
          {p.x - dx - s.width, p.y - dy - s.height}, {p.x - dx - s.width, p.y + dy}};
      for (const auto& c : corners) {
        const cv::Rect box(c, s);
        if (free(box)) {
          chosen = box;
          found = true;
          break;
        }
      }
    }
    if (!found) {  // nowhere free: keep it inside the area, right of the point
      chosen = cv::Rect(cv::Point(std::clamp(p.x + gap, area.x, area.x + area.width - s.width),
                                  std::clamp(p.y - s.height / 2, area.y, area.y + area.height - s.height)),
                        s);
    }
    placed.push_back(chosen);
  }
  return placed;
}

}  // namespace attnseg::plot
