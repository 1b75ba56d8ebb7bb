#include "engine/leaderboard.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "core/atomic_file.h"
#include "core/error.h"
#include "engine/plot.h"

namespace attnseg {

namespace fs = std::filesystem;
using namespace plot;  // NOLINT(google-build-using-namespace): the drawing helpers

double mean(const std::vector<double>& v) {
  return v.empty() ? std::numeric_limits<double>::quiet_NaN()
                   : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double spread(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / static_cast<double>(v.size() - 1));
}

std::vector<size_t> pareto_front(const std::vector<LeaderboardRow>& rows) {
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  // Fastest first; among equally fast rows the more accurate first.
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (rows[a].fps != rows[b].fps) return rows[a].fps > rows[b].fps;
    return mean(rows[a].miou) > mean(rows[b].miou);
  });
  std::vector<size_t> front;
  double best = -std::numeric_limits<double>::infinity();
  for (size_t i : order) {
    if (mean(rows[i].miou) > best) {
      front.push_back(i);
      best = mean(rows[i].miou);
    }
  }
  return front;
}

namespace {

// One more than the number of rows that beat each row (see tie_ranks).
std::vector<int64_t> tie_rank_numbers(const std::vector<LeaderboardRow>& rows) {
  std::vector<int64_t> rank(rows.size(), 1);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t j = 0; j < rows.size(); ++j) {
      if (j == i) continue;
      const double lead = mean(rows[j].miou) - mean(rows[i].miou);
      const double noise = std::max(spread(rows[i].miou), spread(rows[j].miou));
      const bool seeds = rows[i].miou.size() > 1 && rows[j].miou.size() > 1;
      // Without a spread, order alone decides (the earlier of two equal rows goes first).
      const bool beats = seeds ? lead >= noise && lead > 0 : (lead > 0 || (lead == 0 && j < i));
      if (beats) ++rank[i];
    }
  }
  return rank;
}

}  // namespace

std::vector<std::string> tie_ranks(const std::vector<LeaderboardRow>& rows) {
  const std::vector<int64_t> rank = tie_rank_numbers(rows);
  std::vector<std::string> text;
  for (size_t i = 0; i < rows.size(); ++i) {
    const bool shared = std::count(rank.begin(), rank.end(), rank[i]) > 1;
    text.push_back(std::to_string(rank[i]) + (shared ? "=" : ""));
  }
  return text;
}

void order_rows(std::vector<LeaderboardRow>& rows) {
  std::stable_sort(rows.begin(), rows.end(),
                   [](const LeaderboardRow& a, const LeaderboardRow& b) { return mean(a.miou) > mean(b.miou); });
  // A row whose seeds disagree widely is beaten by few and ranks above steadier rows with a
  // higher mean; ordering by rank keeps the rank column from going down the table.
  const std::vector<int64_t> rank = tie_rank_numbers(rows);
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rank[a] < rank[b]; });
  std::vector<LeaderboardRow> sorted;
  for (size_t i : order) sorted.push_back(std::move(rows[i]));
  rows = std::move(sorted);
}

namespace {

// "750", "750 (2/3)" when only some seeds learned (median of those), "never", or "-" without curves.
std::string learned_text(const LeaderboardRow& r) {
  std::vector<int64_t> learned;
  for (int64_t it : r.learned_at) {
    if (it >= 0) learned.push_back(it);
  }
  if (r.learned_at.empty()) return "-";
  if (learned.empty()) return "never";
  std::sort(learned.begin(), learned.end());
  const size_t n = learned.size();
  const double median = n % 2 ? static_cast<double>(learned[n / 2])
                              : 0.5 * static_cast<double>(learned[n / 2 - 1] + learned[n / 2]);
  std::string text = format("%.0f", median);
  if (n < r.learned_at.size()) text += " (" + std::to_string(n) + "/" + std::to_string(r.learned_at.size()) + ")";
  return text;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

const LeaderboardRow* find_row(const Leaderboard& board, const std::string& block) {
  for (const auto& row : board.rows) {
    if (row.block == block) return &row;
  }
  return nullptr;
}

std::string size_text(const std::array<int64_t, 2>& s) { return std::to_string(s[0]) + "x" + std::to_string(s[1]); }

// "98 / 97 / 61 / 35": the mean reach curve in percent, "-" where undefined.
std::string reach_text(const LeaderboardRow& r) {
  std::string text;
  for (double v : mean_reach(r)) {
    text += (text.empty() ? "" : " / ") + (std::isnan(v) ? std::string("-") : format("%.0f", 100 * v));
  }
  return text.empty() ? "-" : text;
}

// "tri_checker, tri_stripes", or `none` for an empty list.
std::string comma_list(const std::vector<std::string>& names, const std::string& none) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text.empty() ? none : text;
}

}  // namespace

std::vector<double> mean_reach(const LeaderboardRow& row) {
  size_t regions = 0;
  for (const auto& seed : row.reach) regions = std::max(regions, seed.size());
  std::vector<double> out;
  for (size_t k = 0; k < regions; ++k) {
    std::vector<double> v;
    for (const auto& seed : row.reach) v.push_back(k < seed.size() ? seed[k] : std::numeric_limits<double>::quiet_NaN());
    out.push_back(mean(v));
  }
  return out;
}

std::string leaderboard_csv(const Leaderboard& board) {
  std::string out =
      "rank,block,miou_mean,miou_std,seeds,miou_per_seed,fps,median_ms,p25_ms,p75_ms,model_parameters,"
      "block_parameters,model_macs,block_macs,peak_bytes,block_time_exponent,pareto,tie_rank,learned_at_per_seed,erf,cue";
  for (const auto& name : board.region_names) out += ",reach_" + csv_field(name);
  const std::vector<std::string>& classes = board.rows.empty() ? std::vector<std::string>{} : board.rows[0].class_names;
  for (const auto& name : classes) out += ",iou_" + csv_field(name);
  out += ",note\n";
  const std::vector<size_t> front = pareto_front(board.rows);
  const std::vector<std::string> ranks = tie_ranks(board.rows);
  for (size_t i = 0; i < board.rows.size(); ++i) {
    const LeaderboardRow& r = board.rows[i];
    std::string learned;
    for (int64_t it : r.learned_at) learned += (learned.empty() ? "" : ";") + std::to_string(it);
    std::string seeds;
    for (double m : r.miou) seeds += (seeds.empty() ? "" : ";") + format("%.6f", m);
    const bool on_front = std::find(front.begin(), front.end(), i) != front.end();
    out += std::to_string(i + 1) + "," + csv_field(r.block) + "," + format("%.6f", mean(r.miou)) + "," +
           format("%.6f", spread(r.miou)) + "," + std::to_string(r.miou.size()) + "," + seeds + "," +
           format("%.3f", r.fps) + "," + format("%.4f", r.median_ms) + "," + format("%.4f", r.p25_ms) + "," +
           format("%.4f", r.p75_ms) + "," + std::to_string(r.model_parameters) + "," +
           std::to_string(r.block_parameters) + "," + std::to_string(r.model_macs) + "," +
           std::to_string(r.block_macs) + "," + std::to_string(r.peak_bytes) + "," +
           (std::isnan(r.time_exponent) ? std::string() : format("%.4f", r.time_exponent)) + "," +
           (on_front ? "1" : "0") + "," + ranks[i] + "," + learned + "," +
           (std::isnan(r.erf) ? std::string() : format("%.6f", r.erf)) + "," +
           (std::isnan(r.cue) ? std::string() : format("%.6f", r.cue));
    const std::vector<double> reach = mean_reach(r);
    for (size_t k = 0; k < board.region_names.size(); ++k) {
      out += "," + (k < reach.size() && !std::isnan(reach[k]) ? format("%.6f", reach[k]) : "");
    }
    for (size_t c = 0; c < classes.size(); ++c) {
      out += "," + (c < r.class_iou.size() && !std::isnan(r.class_iou[c]) ? format("%.6f", r.class_iou[c]) : "");
    }
    out += "," + csv_field(r.note) + "\n";
  }
  return out;
}

std::string leaderboard_markdown(const Leaderboard& b) {
  std::string out;
  out += "Leaderboard: " + b.config + (b.overrides.empty() ? "" : " " + b.overrides) + "\n";
  out += "Same backbone, head, data, crop, schedule (" + std::to_string(b.iterations) + " iterations) and ";
  out += b.seeds == 1 ? "seed " + std::to_string(b.first_seed)
                      : std::to_string(b.seeds) + " seeds (" + std::to_string(b.first_seed) + ".." +
                            std::to_string(b.first_seed + b.seeds - 1) + "; mIoU mean ± sample std)";
  out += " for every block; only model.attention.type differs.\n";
  out += "Speed: whole model on one " + size_text(b.resolution) + " image, " + b.device + ", " +
         std::to_string(b.threads) + " threads, inference mode, fastest of " + std::to_string(b.rounds) +
         " rounds over the blocks in turn (median of each round's runs). Block alone: [1, " +
         std::to_string(b.block_channels) + ", " + std::to_string(b.feature[0]) + ", " +
         std::to_string(b.feature[1]) + "]; time ~ N^k fitted over " + std::to_string(b.feature[0]) + "x" +
         std::to_string(b.feature[1]) + " and its 2x, 4x enlargements.\n";
  const bool seeds = b.seeds > 1;
  out += seeds ? "Rank: rows that no other row beats by at least the seed spread (the larger std of the two) "
                 "share a rank, shown 2=; rows in rank order, then by mean.\n"
               : "Rank: one seed gives no spread, so ties cannot be judged; run --seeds 3 or more.\n";
  if (b.eval_interval > 0 && !b.context_classes.empty()) {
    std::string classes;
    for (size_t k = 0; k < b.context_classes.size(); ++k) {
      classes += (k == 0 ? "" : k + 1 == b.context_classes.size() ? " and " : ", ") + b.context_classes[k];
    }
    out += "Learned at: the first validation point (every " + std::to_string(b.eval_interval) +
           " iterations) where " + classes +
           (b.context_classes.size() == 1 ? " reaches " : b.context_classes.size() == 2 ? " both reach " : " all reach ") +
           format("%.0f", 100 * b.learned_iou) +
           "% IoU; median over the seeds that did, (k/n) when not all did.\n";
  }
  out += "ERF: share of the block's input map that reaches a central output (gradient above 1% of the "
         "largest elsewhere), trained block on validation features, mean over seeds.\n";
  if (std::any_of(b.rows.begin(), b.rows.end(), [](const LeaderboardRow& r) { return !std::isnan(r.cue); })) {
    out += "Cue: share of the input gradient of the context classes' outputs that falls on the cue's pixels "
           "(eval.cue_classes), trained model, mean over seeds.\n";
  }
  const bool reach = !b.region_names.empty();
  std::string regions;
  for (const auto& name : b.region_names) regions += (regions.empty() ? "" : " / ") + name;
  if (reach) {
    out += "Reach: IoU % of " + comma_list(b.context_classes, "every class") + " on the objects in each region of the dataset (" + regions + "), mean over seeds.\n";
  }
  out += "\n| # | block | mIoU %" + std::string(seeds ? " (mean ± std)" : "") + " | Δ none | learned at | " +
         (reach ? "reach IoU % | " : "") +
         "FPS | ms (p25-p75) | GMAC model | MMAC block | params model | params block | "
         "peak MB | block time ~ N^k | ERF % | cue % | Pareto |\n";
  out += std::string("|---|---|---:|---:|---:|") + (reach ? "---:|" : "") + "---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  const LeaderboardRow* none = find_row(b, "none");
  const std::vector<size_t> front = pareto_front(b.rows);
  const std::vector<std::string> ranks = tie_ranks(b.rows);
  for (size_t i = 0; i < b.rows.size(); ++i) {
    const LeaderboardRow& r = b.rows[i];
    std::string miou = format("%.2f", 100 * mean(r.miou));
    if (seeds) miou += " ± " + format("%.2f", 100 * spread(r.miou));
    const std::string delta = none ? format("%+.2f", 100 * (mean(r.miou) - mean(none->miou))) : "-";
    const bool on_front = std::find(front.begin(), front.end(), i) != front.end();
    out += "| " + ranks[i] + " | " + r.block + " | " + miou + " | " + delta + " | " + learned_text(r) + " | " +
           (reach ? reach_text(r) + " | " : "") + format("%.1f", r.fps) + " | " + format("%.2f", r.median_ms) + " (" + format("%.2f", r.p25_ms) + "-" +
           format("%.2f", r.p75_ms) + ") | " + format("%.3f", r.model_macs / 1e9) + " | " +
           format("%.2f", r.block_macs / 1e6) + " | " + format("%.3fM", r.model_parameters / 1e6) + " | " +
           format("%.1fk", r.block_parameters / 1e3) + " | " + format("%.2f", r.peak_bytes / 1048576.0) + " | " +
           (std::isnan(r.time_exponent) ? std::string("-") : format("%.2f", r.time_exponent)) + " | " +
           (std::isnan(r.erf) ? std::string("-") : format("%.1f", 100 * r.erf)) + " | " +
           (std::isnan(r.cue) ? std::string("-") : format("%.2f", 100 * r.cue)) + " | " + (on_front ? "yes" : "") +
           " |\n";
  }
  for (const auto& r : b.rows) {
    if (!r.note.empty()) out += "\nnote: " + r.block + ": " + r.note;
  }
  if (std::any_of(b.rows.begin(), b.rows.end(), [](const LeaderboardRow& r) { return !r.note.empty(); })) {
    out += "\n";
  }
  return out;
}

namespace {

std::string device_text(const Leaderboard& b) {
  return size_text(b.resolution) + " images, " + b.device + ", " + std::to_string(b.threads) + " threads";
}

}  // namespace

void draw_leaderboard(const Leaderboard& b, const fs::path& png) {
  cv::Mat image(720, 1100, CV_8UC3, kWhite);
  Axes a;
  a.plot = cv::Rect(100, 50, 960, 570);
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& r : b.rows) {
    const double m = 100 * mean(r.miou), s = 100 * spread(r.miou);
    x0 = std::min(x0, r.fps);
    x1 = std::max(x1, r.fps);
    y0 = std::min(y0, m - s);
    y1 = std::max(y1, m + s);
  }
  if (b.rows.empty()) x0 = 0, x1 = 1, y0 = 0, y1 = 100;
  if (x1 - x0 < 1e-9) x0 -= 1, x1 += 1;
  if (y1 - y0 < 1e-9) y0 -= 1, y1 += 1;
  const double px = 0.1 * (x1 - x0), py = 0.1 * (y1 - y0);
  a.x0 = std::max(0.0, x0 - px), a.x1 = x1 + px, a.y0 = y0 - py, a.y1 = std::min(100.0, y1 + py);
  if (a.y1 <= y1) a.y1 = y1 + py;
  draw_axes(image, a, nice_ticks(a.x0, a.x1, 8), nice_ticks(a.y0, a.y1, 7),
            "throughput of the whole model, images/s (" + device_text(b) + ")", "mIoU, % (validation split)",
            "mIoU against speed: " + std::to_string(b.rows.size()) + " blocks, same model, data, schedule and " +
                (b.seeds > 1 ? std::to_string(b.seeds) + " seeds" : "seed"));

  // Pareto front: dashed segments between consecutive front points, fastest first.
  const std::vector<size_t> front = pareto_front(b.rows);
  std::vector<cv::Point> front_line;
  for (size_t i : front) front_line.push_back(a.map(b.rows[i].fps, 100 * mean(b.rows[i].miou)));
  std::vector<cv::Rect> obstacles;
  add_line_obstacles(front_line, obstacles);
  for (size_t k = 1; k < front.size(); ++k) {
    const cv::Point p = a.map(b.rows[front[k - 1]].fps, 100 * mean(b.rows[front[k - 1]].miou));
    const cv::Point q = a.map(b.rows[front[k]].fps, 100 * mean(b.rows[front[k]].miou));
    const double length = std::hypot(q.x - p.x, q.y - p.y);
    for (double t = 0; t < length; t += 12) {
      const double t2 = std::min(length, t + 7);
      cv::line(image, p + (q - p) * (t / length), p + (q - p) * (t2 / length), kAxis, 2, cv::LINE_AA);
    }
  }
  std::vector<cv::Point> anchors;
  std::vector<cv::Size> sizes;
  std::vector<std::string> labels;
  for (const auto& r : b.rows) {
    const double m = 100 * mean(r.miou), s = 100 * spread(r.miou);
    anchors.push_back(a.map(r.fps, m));
    if (s > 0) {
      cv::line(image, a.map(r.fps, m - s), a.map(r.fps, m + s), kAxis, 1, cv::LINE_AA);
      add_line_obstacles({a.map(r.fps, m - s), a.map(r.fps, m + s)}, obstacles);
    }
    labels.push_back(r.block + " " + format("%.1f", m));
    sizes.push_back(text_size(labels.back(), 0.5) + cv::Size(4, 2));
  }
  // Clear of the 9-pixel ring that marks the Pareto front, not only of the 6-pixel point.
  const std::vector<cv::Rect> boxes = place_labels(anchors, sizes, a.plot, 9, obstacles);
  for (size_t i = 0; i < b.rows.size(); ++i) {
    const cv::Rect& box = boxes[i];
    const cv::Point centre(box.x + box.width / 2, box.y + box.height / 2);
    if (std::hypot(centre.x - anchors[i].x, centre.y - anchors[i].y) > box.width / 2 + 20) {
      cv::line(image, anchors[i], centre, kGrid * 0.8, 1, cv::LINE_AA);  // leader line to a far label
    }
    cv::circle(image, anchors[i], 6, colour(i), cv::FILLED, cv::LINE_AA);
    const bool on_front = std::find(front.begin(), front.end(), i) != front.end();
    if (on_front) cv::circle(image, anchors[i], 9, kBlack, 1, cv::LINE_AA);
    put_text(image, labels[i], {box.x + 2, box.y + 1}, 0.5, colour(i));
  }
  const std::string legend = "ringed, dashed: Pareto front (no other block both faster and more accurate)";
  put_text(image, legend, {a.plot.x, a.plot.y + a.plot.height + 58}, 0.45, kAxis);
  write_png_atomically(png, image);
}

void draw_scaling(const Leaderboard& b, const fs::path& png) {
  cv::Mat image(720, 1100, CV_8UC3, kWhite);
  Axes a;
  a.plot = cv::Rect(100, 50, 830, 570);
  a.log_x = a.log_y = true;
  double x0 = std::numeric_limits<double>::infinity(), x1 = 0, y0 = x0, y1 = 0;
  std::vector<size_t> drawn;
  for (size_t i = 0; i < b.rows.size(); ++i) {
    bool any = false;
    for (const auto& [n, ms] : b.rows[i].scaling) {
      if (n <= 0 || ms <= 0 || b.rows[i].block == "none") continue;
      x0 = std::min(x0, n), x1 = std::max(x1, n), y0 = std::min(y0, ms), y1 = std::max(y1, ms);
      any = true;
    }
    if (any) drawn.push_back(i);
  }
  if (drawn.empty()) x0 = 1, x1 = 10, y0 = 1, y1 = 10;
  if (x1 <= x0) x0 /= 2, x1 *= 2;
  if (y1 <= y0) y0 /= 2, y1 *= 2;
  a.x0 = x0 / 1.4, a.x1 = x1 * 1.4, a.y0 = y0 / 1.6, a.y1 = y1 * 1.6;
  draw_axes(image, a, log_ticks(a.x0, a.x1), log_ticks(a.y0, a.y1),
            "tokens N = h*w of the block's input (log scale)", "block latency, ms (log scale)",
            "Block alone on [1, " + std::to_string(b.block_channels) + ", h, w]: latency against tokens (" +
                b.device + ", " + std::to_string(b.threads) + " threads)");
  std::vector<cv::Point> ends;
  std::vector<cv::Size> sizes;
  std::vector<std::string> labels;
  std::vector<cv::Rect> obstacles;
  for (size_t i : drawn) {
    std::vector<cv::Point> line;
    for (const auto& [n, ms] : b.rows[i].scaling) {
      if (n > 0 && ms > 0) line.push_back(a.map(n, ms));
    }
    add_line_obstacles(line, obstacles);
    cv::polylines(image, line, false, colour(i), 2, cv::LINE_AA);
    for (const auto& p : line) cv::circle(image, p, 4, colour(i), cv::FILLED, cv::LINE_AA);
    ends.push_back(line.back());
    const double k = b.rows[i].time_exponent;
    labels.push_back(b.rows[i].block + (std::isnan(k) ? std::string() : " N^" + format("%.2f", k)));
    sizes.push_back(text_size(labels.back(), 0.5) + cv::Size(4, 2));
  }
  // Labels beside the last points, in the margin right of the plot where there is room.
  const cv::Rect label_area(a.plot.x, a.plot.y, image.cols - a.plot.x - 4, a.plot.height);
  const std::vector<cv::Rect> boxes = place_labels(ends, sizes, label_area, 4, obstacles);
  for (size_t j = 0; j < drawn.size(); ++j) {
    put_text(image, labels[j], {boxes[j].x + 2, boxes[j].y + 1}, 0.5, colour(drawn[j]));
  }
  std::string skipped;
  for (const auto& r : b.rows) {
    if (r.block == "none") skipped = "none (the identity) is not drawn";
  }
  if (!skipped.empty()) put_text(image, skipped, {a.plot.x, a.plot.y + a.plot.height + 58}, 0.45, kAxis);
  write_png_atomically(png, image);
}

void draw_learning_curves(const Leaderboard& b, const fs::path& png) {
  std::vector<CurveSet> sets;
  for (const auto& r : b.rows) sets.push_back({r.block, r.curves});
  draw_curves(sets,
              "Validation mIoU during training: " + std::to_string(b.rows.size()) + " blocks, same model, data, " +
                  "schedule and " + (b.seeds > 1 ? std::to_string(b.seeds) + " seeds" : "seed"),
              png);
}

void draw_reach(const Leaderboard& b, const fs::path& png) {
  std::vector<CurveSet> sets;
  for (const auto& r : b.rows) {
    CurveSet set{r.block, {}};
    for (const auto& seed : r.reach) {
      LearningCurve curve;
      for (size_t k = 0; k < seed.size(); ++k) {
        if (!std::isnan(seed[k])) curve.push_back({static_cast<int64_t>(k + 1), seed[k], {}});
      }
      set.seeds.push_back(curve);
    }
    sets.push_back(set);
  }
  CurveAxes axes;
  axes.x_title = "distance from the cue (L-inf, px)";
  axes.y_title = "IoU %, " + comma_list(b.context_classes, "every class");
  axes.x_names = b.region_names;
  draw_curves(sets,
              "Reach: IoU by distance from the cue, " + std::to_string(b.rows.size()) + " blocks, " +
                  (b.seeds > 1 ? std::to_string(b.seeds) + " seeds" : "one seed"),
              png, axes);
}

}  // namespace attnseg
