// BatchNorm2d that a data-parallel job can synchronise (mmsegmentation's SyncBN, PyTorch's
// SyncBatchNorm): every BatchNorm of the project's models is this one. Alone it is LibTorch's
// BatchNorm2d. While a job has set a sum over its ranks (`BatchNormSync`), a layer in training
// mode normalises with the statistics of the whole global batch: the ranks' per-channel sums of
// x and x² and their element counts are added over the ranks; its backward adds the ranks'
// sums of dy and dy·x̂ the same way, so the gradient is the one-process gradient of the whole
// batch. The running statistics are updated from the global batch (unbiased variance), so they
// stay the same on every rank.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <ostream>

namespace attnseg {

// Adds a tensor over the ranks of a job, in place (every rank calls it in the same order).
using SumOverRanks = std::function<void(at::Tensor&)>;

// Sets the sum that SyncBatchNorm2d layers use while it lives, process-wide, and removes it
// after. One at a time.
class BatchNormSync {
 public:
  explicit BatchNormSync(SumOverRanks sum);
  ~BatchNormSync();
  BatchNormSync(const BatchNormSync&) = delete;
  BatchNormSync& operator=(const BatchNormSync&) = delete;
};

// LibTorch's BatchNorm2d with the same options, parameters and buffers (same names, so
// checkpoints are unchanged): its own module, as Debian's LibTorch does not export what a
// subclass of BatchNorm2dImpl links against.
class SyncBatchNorm2dImpl : public torch::nn::Cloneable<SyncBatchNorm2dImpl> {
 public:
  explicit SyncBatchNorm2dImpl(int64_t num_features) : SyncBatchNorm2dImpl(torch::nn::BatchNormOptions(num_features)) {}
  explicit SyncBatchNorm2dImpl(const torch::nn::BatchNormOptions& options_);
  void reset() override;
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;
  at::Tensor forward(const at::Tensor& input);

  torch::nn::BatchNormOptions options;
  at::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};
TORCH_MODULE(SyncBatchNorm2d);

namespace functional {
// Batch normalisation in training mode over the ranks that `sum` adds across: y and, in place,
// the running statistics (when defined) with `momentum`. Differentiable in input, weight, bias.
at::Tensor sync_batch_norm(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                           const at::Tensor& running_mean, const at::Tensor& running_var, double momentum,
                           double eps, const SumOverRanks& sum);
}  // namespace functional

}  // namespace attnseg
