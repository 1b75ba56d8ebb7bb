// Drawing helpers shared by the sweep's pictures (leaderboard, scaling, learning curves):
// axes with ticks and titles, distinct colours, text boxes, and obstacles for label placement.
#pragma once

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace attnseg::plot {

inline const cv::Scalar kBlack(0, 0, 0), kGrid(225, 225, 225), kAxis(90, 90, 90), kWhite(255, 255, 255);
inline constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

// printf of one number.
std::string format(const char* pattern, double value);
// Distinct, readable colours (BGR), cycled.
cv::Scalar colour(size_t i);
cv::Size text_size(const std::string& text, double scale, int thickness = 1);
// Text whose box's top-left corner is `corner`.
void put_text(cv::Mat& image, const std::string& text, cv::Point corner, double scale, const cv::Scalar& c,
              int thickness = 1);
void put_vertical_text(cv::Mat& image, const std::string& text, cv::Point centre, double scale);
// Ticks at 1, 2 or 5 times a power of ten, about `count` of them over [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int count);
// Ticks at 1, 2 and 5 times each power of ten within [lo, hi] (lo > 0).
std::vector<double> log_ticks(double lo, double hi);
std::string tick_text(double v);

struct Axes {
  cv::Rect plot;
  double x0, x1, y0, y1;
  bool log_x = false, log_y = false;
  double fx(double v) const { return log_x ? std::log10(v) : v; }
  double fy(double v) const { return log_y ? std::log10(v) : v; }
  cv::Point map(double x, double y) const {
    const double u = (fx(x) - fx(x0)) / (fx(x1) - fx(x0)), w = (fy(y) - fy(y0)) / (fy(y1) - fy(y0));
    return {plot.x + static_cast<int>(std::lround(u * plot.width)),
            plot.y + plot.height - static_cast<int>(std::lround(w * plot.height))};
  }
};

// With `x_names`, tick k is labelled x_names[k] instead of its value.
void draw_axes(cv::Mat& image, const Axes& a, const std::vector<double>& xt, const std::vector<double>& yt,
               const std::string& x_title, const std::string& y_title, const std::string& title,
               const std::vector<std::string>& x_names = {});
// Label boxes for points: for each anchor, the first of several positions around it whose box
// of the given size stays inside `area` and overlaps neither an earlier box, nor any anchor's
// marker, nor an obstacle (e.g. the drawn lines); pushed further out when all of those are taken.
std::vector<cv::Rect> place_labels(const std::vector<cv::Point>& anchors, const std::vector<cv::Size>& sizes,
                                   const cv::Rect& area, int marker_radius,
                                   const std::vector<cv::Rect>& obstacles = {});
// Small boxes along a polyline, for labels to keep clear of it.
void add_line_obstacles(const std::vector<cv::Point>& line, std::vector<cv::Rect>& obstacles);

}  // namespace attnseg::plot
