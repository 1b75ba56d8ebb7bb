#include "engine/metrics.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/labels.h"

namespace attnseg {

ConfusionMatrix::ConfusionMatrix(int64_t num_classes)
    : num_classes_(num_classes), matrix_(at::zeros({num_classes, num_classes}, at::kLong)) {
  TORCH_CHECK(num_classes > 0, "ConfusionMatrix: num_classes must be positive");
}

void ConfusionMatrix::update(const at::Tensor& pred, const at::Tensor& label) {
  TORCH_CHECK(pred.sizes() == label.sizes(), "ConfusionMatrix: prediction ", pred.sizes(),
              " and label ", label.sizes(), " differ in shape");
  const at::Tensor p = pred.reshape(-1).to(at::kLong).cpu();
  const at::Tensor l = label.reshape(-1).to(at::kLong).cpu();
  const at::Tensor valid = l != kIgnoreIndex;
  const at::Tensor lv = l.masked_select(valid), pv = p.masked_select(valid);
  TORCH_CHECK(lv.numel() == 0 || (lv.max().item<int64_t>() < num_classes_ && lv.min().item<int64_t>() >= 0),
              "ConfusionMatrix: label outside [0, ", num_classes_, ")");
  TORCH_CHECK(pv.numel() == 0 || (pv.max().item<int64_t>() < num_classes_ && pv.min().item<int64_t>() >= 0),
              "ConfusionMatrix: prediction outside [0, ", num_classes_, ")");
  matrix_ += at::bincount(lv * num_classes_ + pv, {}, num_classes_ * num_classes_)
                 .to(at::kLong)
                 .view({num_classes_, num_classes_});
}

SegMetrics compute_metrics(const at::Tensor& confusion) {
  const at::Tensor m = confusion.to(at::kDouble).cpu();
  const int64_t k = m.size(0);
  const at::Tensor tp = m.diagonal();
  const at::Tensor labelled = m.sum(1), predicted = m.sum(0);
  const at::Tensor uni = labelled + predicted - tp;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  SegMetrics out;
  double iou_sum = 0, acc_sum = 0;
  int64_t iou_n = 0, acc_n = 0;
  for (int64_t c = 0; c < k; ++c) {
    const double t = tp[c].item<double>(), u = uni[c].item<double>(), l = labelled[c].item<double>();
    out.iou.push_back(u > 0 ? t / u : nan);
    out.acc.push_back(l > 0 ? t / l : nan);
    if (u > 0) iou_sum += t / u, ++iou_n;
    if (l > 0) acc_sum += t / l, ++acc_n;
  }
  const double total = labelled.sum().item<double>();
  out.aacc = total > 0 ? tp.sum().item<double>() / total : nan;
  out.miou = iou_n > 0 ? iou_sum / iou_n : nan;
  out.macc = acc_n > 0 ? acc_sum / acc_n : nan;
  return out;
}

}  // namespace attnseg
