// Segmentation metrics from a confusion matrix, as mmsegmentation computes them: per-class
// IoU = TP / (TP + FP + FN) and accuracy = TP / (TP + FN), NaN for a class that never
// occurs (neither labelled nor predicted); mIoU and mAcc are the means over the other
// classes; aAcc is the fraction of labelled pixels predicted right.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace attnseg {

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int64_t num_classes);
  // pred, label: integer tensors of one shape; labels equal to 255 are skipped.
  void update(const at::Tensor& pred, const at::Tensor& label);
  // [K, K] int64, rows = ground truth, columns = prediction.
  const at::Tensor& matrix() const { return matrix_; }
  int64_t num_classes() const { return num_classes_; }

 private:
  int64_t num_classes_;
  at::Tensor matrix_;
};

struct SegMetrics {
  double aacc = 0, macc = 0, miou = 0;
  std::vector<double> iou, acc;  // per class, NaN where undefined
};

SegMetrics compute_metrics(const at::Tensor& confusion);

}  // namespace attnseg
