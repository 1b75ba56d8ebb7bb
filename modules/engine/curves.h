// Learning curves of a sweep: the validation points `train` logs to metrics.jsonl every
// eval.interval iterations, when a run first learned the context rule, and the picture of
// mIoU against iteration (one line per block, the seeds' range as a band).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace attnseg {

struct CurvePoint {
  int64_t iter = 0;
  double miou = 0;                 // fraction in [0, 1]
  std::vector<double> class_iou;   // in the order of the names asked for; NaN where absent
};
using LearningCurve = std::vector<CurvePoint>;

// The validation points of a run's metrics.jsonl, in iteration order (empty when the run
// logged none). Throws attnseg::Error naming the file for a line that is not JSON or a point
// without a finite val_mIoU.
LearningCurve read_learning_curve(const std::filesystem::path& metrics, const std::vector<std::string>& class_names);

// The first point's iteration at which every class in `classes` (indices into class_iou)
// reaches `threshold` (a fraction), -1 when none does or `classes` is empty.
int64_t iterations_to_learn(const LearningCurve& curve, const std::vector<size_t>& classes, double threshold);

struct CurveSet {
  std::string label;
  std::vector<LearningCurve> seeds;
};
// What the axes say. With `x_names`, the points' x values are 1..N and named so (the reach
// curve: IoU per distance bin).
struct CurveAxes {
  std::string x_title = "training iteration";
  std::string y_title = "mIoU, % (validation subset)";
  std::vector<std::string> x_names;
};
// mIoU against iteration: per set the mean over seeds at each iteration that every seed logged,
// drawn as a line, and the band between the lowest and the highest seed. Written atomically.
void draw_curves(const std::vector<CurveSet>& sets, const std::string& title, const std::filesystem::path& png,
                 const CurveAxes& axes = {});

}  // namespace attnseg
