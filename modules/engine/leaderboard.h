// The sweep's leaderboard: one row per block with its mIoU (mean and spread over seeds), the
// whole model's speed and size at the evaluation resolution, and the block's own latency at
// growing token counts. Written as CSV, as a Markdown table (also what the terminal shows),
// and drawn as two pictures: mIoU against FPS with the Pareto front, and block latency
// against token count on log-log axes.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "engine/curves.h"

namespace attnseg {

struct LeaderboardRow {
  std::string block;
  std::vector<double> miou;  // one per seed, fractions in [0, 1]
  std::vector<std::string> class_names;
  std::vector<double> class_iou;  // mean over seeds
  int64_t model_parameters = 0, block_parameters = 0;
  int64_t model_macs = 0;  // executed by one forward at the evaluation resolution
  int64_t block_macs = 0;  // the block's analytic count on the feature map
  double median_ms = 0, p25_ms = 0, p75_ms = 0, fps = 0;  // whole model, fastest round
  int64_t peak_bytes = 0;  // tensor memory of one forward of the whole model
  // Block alone on [1, C, h, w] at growing sizes: token count h·w and median latency.
  std::vector<std::array<double, 2>> scaling;
  double time_exponent = 0;  // NaN with fewer than two sizes
  // Learning: per seed, the validation curve and the first iteration at which every context
  // class passed the threshold (-1: never; none when the runs logged no curve).
  std::vector<LearningCurve> curves;
  std::vector<int64_t> learned_at;
  // Effective receptive field of the trained block (engine/erf.h, threshold 1%) as `eval`
  // measures it, mean over seeds; NaN when a run's eval.json has none.
  double erf = std::numeric_limits<double>::quiet_NaN();
  // Cue influence (evaluator.h; eval.cue_classes) of the trained model, mean over seeds; NaN
  // when a run's eval.json has none.
  double cue = std::numeric_limits<double>::quiet_NaN();
  // Reach: per seed, the context classes' IoU in each region of the dataset (its distance
  // bins; evaluator.h RegionScore), fractions, NaN where undefined; empty without regions.
  std::vector<std::vector<double>> reach;
  std::string note;          // what could not be measured, and why
};

struct Leaderboard {
  std::string config, overrides;  // what every block was trained with
  std::array<int64_t, 2> resolution{0, 0};  // evaluation image, height × width
  std::array<int64_t, 2> feature{0, 0};     // the block's input there
  int64_t block_channels = 0;
  int64_t iterations = 0, seeds = 1, rounds = 1;
  uint64_t first_seed = 0;
  int threads = 0;
  std::string device = "cpu";
  int64_t eval_interval = 0;                 // iterations between curve points; 0: no curves
  std::vector<std::string> context_classes;  // the classes "learned at" waits for
  double learned_iou = 0.8;                  // fraction each must reach
  std::vector<std::string> region_names;     // the reach curve's points; empty: no regions
  std::vector<LeaderboardRow> rows;  // in order_rows' order
};

double mean(const std::vector<double>& v);
// Sample standard deviation; 0 with fewer than two values.
double spread(const std::vector<double>& v);

// Rank of each row: one more than the number of rows that beat it by at least the seed spread,
// i.e. by max(std of either) in mean mIoU; rows sharing a rank are tied and shown "2=". With one
// seed per block there is no spread: every row has its own place.
std::vector<std::string> tie_ranks(const std::vector<LeaderboardRow>& rows);

// The table's order: by tie rank, best first, and by mean mIoU within a rank (a row whose seeds
// disagree widely can share the first rank with a lower mean than rows it does not lose to).
void order_rows(std::vector<LeaderboardRow>& rows);

// Indices of the rows no other row beats on both mean mIoU and FPS, fastest first.
std::vector<size_t> pareto_front(const std::vector<LeaderboardRow>& rows);

std::string leaderboard_csv(const Leaderboard& board);
std::string leaderboard_markdown(const Leaderboard& board);

// PNG pictures, written atomically.
void draw_leaderboard(const Leaderboard& board, const std::filesystem::path& png);
// Validation mIoU against iteration, one line per block, the seeds' range as a band.
void draw_learning_curves(const Leaderboard& board, const std::filesystem::path& png);
void draw_scaling(const Leaderboard& board, const std::filesystem::path& png);
// The context classes' IoU in each region (the reach curve), one line per block, seeds as bands.
void draw_reach(const Leaderboard& board, const std::filesystem::path& png);

// Mean over seeds of each region's IoU (NaN where a seed has none).
std::vector<double> mean_reach(const LeaderboardRow& row);

}  // namespace attnseg
