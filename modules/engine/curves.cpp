#include "engine/curves.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "engine/leaderboard.h"
#include "engine/plot.h"

namespace attnseg {

namespace fs = std::filesystem;

LearningCurve read_learning_curve(const fs::path& metrics, const std::vector<std::string>& class_names) {
  std::ifstream in(metrics);
  if (!in) throw Error("cannot read " + metrics.string());
  LearningCurve curve;
  std::string text;
  for (int64_t line = 1; std::getline(in, text); ++line) {
    if (text.empty()) continue;
    const std::string where = metrics.string() + " line " + std::to_string(line);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      throw Error(where + " is not JSON (" + one_line(e.what()) + ")");
    }
    if (!j.is_object() || !j.contains("val_mIoU")) continue;  // a training-loss line
    CurvePoint p;
    try {
      p.iter = j.at("iter").get<int64_t>();
      p.miou = j.at("val_mIoU").get<double>();
    } catch (const std::exception& e) {
      throw Error(where + ": a validation point needs an integer iter and a number val_mIoU (" + one_line(e.what()) + ")");
    }
    if (!std::isfinite(p.miou)) throw Error(where + ": val_mIoU is not finite");
    const nlohmann::json iou = j.value("val_IoU", nlohmann::json::object());
    for (const std::string& name : class_names) {
      const bool known = iou.is_object() && iou.contains(name) && iou[name].is_number();
      p.class_iou.push_back(known ? iou[name].get<double>() : std::numeric_limits<double>::quiet_NaN());
    }
    curve.push_back(p);
  }
  std::stable_sort(curve.begin(), curve.end(), [](const CurvePoint& a, const CurvePoint& b) { return a.iter < b.iter; });
  return curve;
}

int64_t iterations_to_learn(const LearningCurve& curve, const std::vector<size_t>& classes, double threshold) {
  if (classes.empty()) return -1;
  for (const CurvePoint& p : curve) {
    const bool all = std::all_of(classes.begin(), classes.end(), [&](size_t c) {
      return c < p.class_iou.size() && p.class_iou[c] >= threshold;  // NaN never passes
    });
    if (all) return p.iter;
  }
  return -1;
}

namespace {

// Per iteration that every seed logged: the seeds' mean, lowest and highest mIoU, in percent.
struct Band {
  std::vector<double> iter, mean, low, high;
};

Band band_of(const CurveSet& set) {
  std::map<int64_t, std::vector<double>> at;
  for (const LearningCurve& curve : set.seeds) {
    for (const CurvePoint& p : curve) at[p.iter].push_back(100 * p.miou);
  }
  Band b;
  for (const auto& [iter, values] : at) {
    if (values.size() != set.seeds.size()) continue;
    double sum = 0;
    for (double v : values) sum += v;
    b.iter.push_back(static_cast<double>(iter));
    b.mean.push_back(sum / static_cast<double>(values.size()));
    b.low.push_back(*std::min_element(values.begin(), values.end()));
    b.high.push_back(*std::max_element(values.begin(), values.end()));
  }
  return b;
}

}  // namespace

void draw_curves(const std::vector<CurveSet>& sets, const std::string& title, const fs::path& png,
                 const CurveAxes& axes) {
  using namespace plot;  // NOLINT(google-build-using-namespace): the drawing helpers
  cv::Mat image(720, 1100, CV_8UC3, kWhite);
  std::vector<Band> bands;
  double x1 = 1, y0 = 100, y1 = 0;
  for (const CurveSet& set : sets) {
    bands.push_back(band_of(set));
    const Band& b = bands.back();
    for (size_t k = 0; k < b.iter.size(); ++k) {
      x1 = std::max(x1, b.iter[k]);
      y0 = std::min(y0, b.low[k]);
      y1 = std::max(y1, b.high[k]);
    }
  }
  if (y1 <= y0) y0 = 0, y1 = 100;
  Axes a;
  a.plot = cv::Rect(100, 50, 830, 570);
  const bool named = !axes.x_names.empty();
  a.x0 = named ? 0.5 : 0, a.x1 = named ? static_cast<double>(axes.x_names.size()) + 0.5 : x1 * 1.02;
  a.y0 = std::max(0.0, y0 - 0.05 * (y1 - y0)), a.y1 = std::min(100.0, y1 + 0.05 * (y1 - y0));
  if (a.y1 <= a.y0) a.y1 = a.y0 + 1;
  std::vector<double> x_ticks;
  if (named) {
    for (size_t k = 1; k <= axes.x_names.size(); ++k) x_ticks.push_back(static_cast<double>(k));
  } else {
    x_ticks = nice_ticks(a.x0, a.x1, 8);
  }
  draw_axes(image, a, x_ticks, nice_ticks(a.y0, a.y1, 7), axes.x_title, axes.y_title, title, axes.x_names);
  // Bands first, blended, so that every line stays visible above them.
  cv::Mat overlay = image.clone();
  for (size_t i = 0; i < bands.size(); ++i) {
    const Band& b = bands[i];
    if (b.iter.size() < 2) continue;
    std::vector<cv::Point> polygon;
    for (size_t k = 0; k < b.iter.size(); ++k) polygon.push_back(a.map(b.iter[k], b.high[k]));
    for (size_t k = b.iter.size(); k-- > 0;) polygon.push_back(a.map(b.iter[k], b.low[k]));
    cv::fillPoly(overlay, std::vector<std::vector<cv::Point>>{polygon}, colour(i), cv::LINE_AA);
  }
  cv::addWeighted(overlay, 0.18, image, 0.82, 0, image);
  std::vector<cv::Point> ends;
  std::vector<cv::Size> sizes;
  std::vector<std::string> labels;
  std::vector<cv::Rect> obstacles;
  std::vector<size_t> drawn;
  for (size_t i = 0; i < bands.size(); ++i) {
    const Band& b = bands[i];
    if (b.iter.empty()) continue;
    std::vector<cv::Point> line;
    for (size_t k = 0; k < b.iter.size(); ++k) line.push_back(a.map(b.iter[k], b.mean[k]));
    cv::polylines(image, line, false, colour(i), 2, cv::LINE_AA);
    for (const auto& p : line) cv::circle(image, p, 3, colour(i), cv::FILLED, cv::LINE_AA);
    add_line_obstacles(line, obstacles);
    ends.push_back(line.back());
    labels.push_back(sets[i].label + " " + format("%.1f", b.mean.back()));
    sizes.push_back(text_size(labels.back(), 0.5) + cv::Size(4, 2));
    drawn.push_back(i);
  }
  const cv::Rect label_area(a.plot.x, a.plot.y, image.cols - a.plot.x - 4, a.plot.height);
  const std::vector<cv::Rect> boxes = place_labels(ends, sizes, label_area, 3, obstacles);
  for (size_t j = 0; j < drawn.size(); ++j) {
    put_text(image, labels[j], {boxes[j].x + 2, boxes[j].y + 1}, 0.5, colour(drawn[j]));
  }
  const size_t seeds = sets.empty() ? 0 : sets.front().seeds.size();
  put_text(image,
           seeds > 1 ? "line: mean over " + std::to_string(seeds) + " seeds; band: lowest to highest seed"
                     : "one seed per block",
           {a.plot.x, a.plot.y + a.plot.height + 58}, 0.45, kAxis);
  write_png_atomically(png, image);
}

}  // namespace attnseg
