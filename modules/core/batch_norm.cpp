#include "core/batch_norm.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <mutex>
#include <utility>
#include <vector>

#include "core/error.h"

namespace attnseg {

namespace {

std::mutex sync_mutex;
SumOverRanks* active_sum = nullptr;  // guarded by sync_mutex; set by BatchNormSync

SumOverRanks current_sum() {
  std::lock_guard<std::mutex> lock(sync_mutex);
  return active_sum != nullptr ? *active_sum : SumOverRanks();
}

// Per channel of [B, C, H, W] (or [B, C]): the dimensions reduced over.
std::vector<int64_t> reduced_dims(const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

at::Tensor per_channel(const at::Tensor& t, int64_t dim) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[1] = t.size(0);
  return t.view(shape);
}

// The sum a forward used, kept in its autograd context (saved_data holds IValues: a capsule).
struct SumHolder : torch::CustomClassHolder {
  explicit SumHolder(SumOverRanks s) : sum(std::move(s)) {}
  SumOverRanks sum;
};

// Normalises with global statistics computed before (they carry no gradient of their own: the
// backward below is the whole derivative, through the mean and variance included); its
// backward adds the ranks' per-channel sums of dy and dy·x̂.
class SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& invstd, double count,
                            const SumOverRanks& sum) {
    const int64_t dim = input.dim();
    const at::Tensor xhat = (input.to(at::kFloat) - per_channel(mean, dim)) * per_channel(invstd, dim);
    at::Tensor y = xhat;
    if (weight.defined()) y = y * per_channel(weight.to(at::kFloat), dim) + per_channel(bias.to(at::kFloat), dim);
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["count"] = count;
    ctx->saved_data["sum"] = c10::IValue::make_capsule(c10::make_intrusive<SumHolder>(sum));
    ctx->saved_data["input_type"] = static_cast<int64_t>(input.scalar_type());
    return y.to(input.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& xhat = saved[0];
    const at::Tensor& invstd = saved[1];
    const at::Tensor& weight = saved[2];
    const double count = ctx->saved_data["count"].toDouble();
    const auto input_type = static_cast<at::ScalarType>(ctx->saved_data["input_type"].toInt());
    const SumOverRanks& sum =
        c10::static_intrusive_pointer_cast<SumHolder>(ctx->saved_data["sum"].toCapsule())->sum;
    const at::Tensor dy = grads[0].to(at::kFloat);
    const int64_t channels = xhat.size(1), dim = xhat.dim();
    const std::vector<int64_t> dims = reduced_dims(xhat);
    const at::Tensor sum_dy = dy.sum(dims), sum_dy_xhat = (dy * xhat).sum(dims);
    at::Tensor global = at::cat({sum_dy, sum_dy_xhat}).to(at::kDouble);
    sum(global);
    const at::Tensor mean_dy = (global.narrow(0, 0, channels) / count).to(at::kFloat);
    const at::Tensor mean_dy_xhat = (global.narrow(0, channels, channels) / count).to(at::kFloat);
    at::Tensor scale = invstd;
    if (weight.defined()) scale = scale * weight.to(at::kFloat);
    const at::Tensor dx =
        per_channel(scale, dim) * (dy - per_channel(mean_dy, dim) - xhat * per_channel(mean_dy_xhat, dim));
    at::Tensor dweight, dbias;
    if (weight.defined()) {
      dweight = sum_dy_xhat.to(weight.scalar_type());  // this rank's share: the job averages gradients
      dbias = sum_dy.to(weight.scalar_type());
    }
    return {dx.to(input_type), dweight, dbias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

BatchNormSync::BatchNormSync(SumOverRanks sum) {
  std::lock_guard<std::mutex> lock(sync_mutex);
  if (active_sum != nullptr) throw Error("BatchNormSync: a synchronisation is already active in this process");
  active_sum = new SumOverRanks(std::move(sum));
}

BatchNormSync::~BatchNormSync() {
  std::lock_guard<std::mutex> lock(sync_mutex);
  delete active_sum;
  active_sum = nullptr;
}

namespace functional {
at::Tensor sync_batch_norm(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                           const at::Tensor& running_mean, const at::Tensor& running_var, double momentum, double eps,
                           const SumOverRanks& sum) {
  const int64_t channels = input.size(1);
  at::Tensor mean, invstd;
  double count = 0;
  {
    torch::NoGradGuard no_grad;
    const at::Tensor x = input.detach().to(at::kFloat);
    const std::vector<int64_t> dims = reduced_dims(x);
    // Sums in double, so that E[x²] − E[x]² over a large global batch keeps its digits.
    at::Tensor stats = at::cat({x.sum(dims).to(at::kDouble), x.square().sum(dims).to(at::kDouble),
                                at::full({1}, static_cast<double>(x.numel() / channels), x.options().dtype(at::kDouble))});
    sum(stats);
    count = stats[2 * channels].item<double>();
    if (count <= 1) throw Error("sync_batch_norm: the global batch holds one value per channel; BatchNorm needs more");
    const at::Tensor global_mean = stats.narrow(0, 0, channels) / count;
    const at::Tensor var = (stats.narrow(0, channels, channels) / count - global_mean.square()).clamp_min(0);
    if (running_mean.defined()) {
      running_mean.mul_(1 - momentum).add_(global_mean.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum).add_((var * (count / (count - 1))).to(running_var.scalar_type()), momentum);
    }
    mean = global_mean.to(at::kFloat);
    invstd = (var + eps).rsqrt().to(at::kFloat);
  }
  return SyncBatchNormFunction::apply(input, weight, bias, mean, invstd, count, sum);
}
}  // namespace functional

SyncBatchNorm2dImpl::SyncBatchNorm2dImpl(const torch::nn::BatchNormOptions& options_) : options(options_) {
  reset();
}

void SyncBatchNorm2dImpl::reset() {
  const int64_t c = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", at::empty({c}));
    bias = register_parameter("bias", at::empty({c}));
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", at::zeros({c}));
    running_var = register_buffer("running_var", at::ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", at::zeros({}, at::kLong));
  }
  reset_parameters();
}

void SyncBatchNorm2dImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  if (options.track_running_stats()) {
    running_mean.zero_();
    running_var.fill_(1);
    num_batches_tracked.zero_();
  }
  if (options.affine()) {
    weight.fill_(1);
    bias.zero_();
  }
}

void SyncBatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << "attnseg::SyncBatchNorm2d(" << options.num_features() << ", eps=" << options.eps()
         << ", momentum=" << options.momentum().value_or(0.0) << ", affine=" << options.affine()
         << ", track_running_stats=" << options.track_running_stats() << ")";
}

at::Tensor SyncBatchNorm2dImpl::forward(const at::Tensor& input) {
  TORCH_CHECK(input.dim() == 4, "SyncBatchNorm2d: expected a [B, C, H, W] input, got ", input.dim(), " dimensions");
  // As LibTorch's BatchNorm: the factor of the running averages (a cumulative average without
  // a momentum), the batch's statistics in training or without running ones.
  double momentum = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats()) {
    torch::NoGradGuard no_grad;
    num_batches_tracked += 1;
    if (!options.momentum()) momentum = 1.0 / num_batches_tracked.item<double>();
  }
  const SumOverRanks sum = is_training() ? current_sum() : SumOverRanks();
  if (!sum) {
    return at::batch_norm(input, weight, bias, running_mean, running_var,
                          is_training() || !options.track_running_stats(), momentum, options.eps(),
                          /*cudnn_enabled=*/true);
  }
  return functional::sync_batch_norm(input, weight, bias, running_mean, running_var, momentum, options.eps(), sum);
}

}  // namespace attnseg
