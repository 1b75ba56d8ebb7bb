// Metric arithmetic on hand-made confusion matrices.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "engine/metrics.h"

namespace attnseg {
namespace {

TEST(Metrics, HandComputedConfusionMatrix) {
  // rows = truth, columns = prediction
  const at::Tensor m = torch::tensor({{3, 1, 0}, {0, 2, 0}, {1, 0, 4}}, torch::kLong);
  const SegMetrics s = compute_metrics(m);
  // class 0: TP 3, FN 1, FP 1 -> IoU 3/5; class 1: TP 2, FP 1 -> 2/3; class 2: TP 4, FN 1 -> 4/5
  EXPECT_NEAR(s.iou[0], 3.0 / 5, 1e-12);
  EXPECT_NEAR(s.iou[1], 2.0 / 3, 1e-12);
  EXPECT_NEAR(s.iou[2], 4.0 / 5, 1e-12);
  EXPECT_NEAR(s.miou, (3.0 / 5 + 2.0 / 3 + 4.0 / 5) / 3, 1e-12);
  EXPECT_NEAR(s.acc[0], 3.0 / 4, 1e-12);
  EXPECT_NEAR(s.acc[1], 1.0, 1e-12);
  EXPECT_NEAR(s.acc[2], 4.0 / 5, 1e-12);
  EXPECT_NEAR(s.macc, (0.75 + 1.0 + 0.8) / 3, 1e-12);
  EXPECT_NEAR(s.aacc, 9.0 / 11, 1e-12);
}

TEST(Metrics, AbsentClassIsNaNAndLeftOutOfTheMean) {
  const at::Tensor m = torch::tensor({{5, 0, 0}, {0, 0, 0}, {0, 0, 5}}, torch::kLong);
  const SegMetrics s = compute_metrics(m);
  EXPECT_TRUE(std::isnan(s.iou[1]));
  EXPECT_TRUE(std::isnan(s.acc[1]));
  EXPECT_NEAR(s.miou, 1.0, 1e-12);
}

TEST(Metrics, PredictedButNeverLabelledClassHasZeroIoU) {
  const at::Tensor m = torch::tensor({{2, 2}, {0, 0}}, torch::kLong);
  const SegMetrics s = compute_metrics(m);
  EXPECT_NEAR(s.iou[0], 0.5, 1e-12);
  EXPECT_NEAR(s.iou[1], 0.0, 1e-12);  // union 2, TP 0
  EXPECT_TRUE(std::isnan(s.acc[1]));  // never labelled
  EXPECT_NEAR(s.miou, 0.25, 1e-12);
}

TEST(ConfusionMatrix, CountsPairsAndSkipsIgnoredPixels) {
  ConfusionMatrix cm(3);
  const at::Tensor label = torch::tensor({{0, 1, 2}, {255, 1, 0}}, torch::kLong);
  const at::Tensor pred = torch::tensor({{0, 2, 2}, {1, 1, 1}}, torch::kLong);
  cm.update(pred, label);
  cm.update(pred, label);
  const at::Tensor expected = torch::tensor({{2, 2, 0}, {0, 2, 2}, {0, 0, 2}}, torch::kLong);
  EXPECT_TRUE(torch::equal(cm.matrix(), expected)) << cm.matrix();
}

TEST(ConfusionMatrix, RejectsLabelsOutsideTheClasses) {
  ConfusionMatrix cm(2);
  EXPECT_THROW(cm.update(torch::tensor({0}), torch::tensor({7})), c10::Error);
  EXPECT_THROW(cm.update(torch::tensor({0, 1}), torch::tensor({0})), c10::Error);
}

}  // namespace
}  // namespace attnseg
