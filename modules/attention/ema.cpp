#include "attention/ema.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <cmath>
#include <tuple>

#include "core/device.h"

namespace attnseg {

namespace {
at::Tensor l2_normalise(const at::Tensor& t, int64_t dim) { return t / (1e-6 + t.norm(2, dim, true)); }
}  // namespace

namespace functional {
std::pair<at::Tensor, at::Tensor> em_bases(const at::Tensor& x, const at::Tensor& mu0, int64_t iterations) {
  at::Tensor mu = mu0.detach(), z;
  auto m_step = [&](const at::Tensor& resp) {
    const at::Tensor normalised = resp / (1e-6 + resp.sum(1, true));
    return l2_normalise(at::bmm(x.detach(), normalised.detach()), 1);
  };
  {
    at::NoGradGuard no_grad;
    for (int64_t i = 0; i + 1 < iterations; ++i) mu = m_step(at::bmm(x.transpose(1, 2), mu).softmax(2));
  }
  z = at::bmm(x.transpose(1, 2), mu).softmax(2);  // the gradient reaches x through here
  at::NoGradGuard no_grad;
  return {m_step(z), z};
}
}  // namespace functional

void EmaOptions::check() const {
  TORCH_CHECK(channels() > 0, "ema: channels must be positive, got ", channels());
  TORCH_CHECK(bases() > 0, "ema: bases must be positive, got ", bases());
  TORCH_CHECK(iterations() >= 1, "ema: iterations must be at least 1, got ", iterations());
  TORCH_CHECK(momentum() >= 0 && momentum() < 1, "ema: momentum must be in [0, 1), got ", momentum());
}

EmaImpl::EmaImpl(const EmaOptions& options_) : options(options_) { reset(); }

void EmaImpl::reset() {
  options.check();
  const int64_t c = options.channels(), k = options.bases();
  mu = register_buffer("mu", l2_normalise(torch::randn({1, c, k}) * std::sqrt(2.0 / k), 1));
  conv1_ = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 1)));
  conv2_ = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 1).bias(false)));
  norm_ = register_module("norm", SyncBatchNorm2d(c));
  // The reference's init: conv weights N(0, 2/(k·k·out)).
  for (auto* conv : {&conv1_, &conv2_}) torch::nn::init::normal_((*conv)->weight, 0.0, std::sqrt(2.0 / c));
}

torch::Tensor EmaImpl::forward(const torch::Tensor& input) {
  const int64_t b = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
  const at::Tensor x = conv1_(input).reshape({b, c, h * w});
  at::Tensor bases, z;
  {
    // The responsibilities are a softmax over the bases of scores in the tens: in bf16 they
    // lose a digit per iteration (5% in the input's gradient, measured), so EM runs in float.
    AutocastDisabled in_float;
    std::tie(bases, z) = functional::em_bases(x.to(mu.scalar_type()), mu.expand({b, c, options.bases()}),
                                              options.iterations());
  }
  if (is_training()) {
    at::NoGradGuard no_grad;
    mu.mul_(options.momentum()).add_(bases.mean(0, true), 1.0 - options.momentum());
  }
  // In place, as the reference does: neither the product's nor the sum's backward needs its output.
  const at::Tensor recon = at::bmm(bases, z.transpose(1, 2)).reshape({b, c, h, w}).relu_();
  return (norm_(conv2_(recon)) + input).relu_();
}

int64_t EmaImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], n = shape[2] * shape[3], k = options.bases();
  // Two 1×1 convs; per EM iteration an E-step and an M-step (n·c·k each); the reconstruction.
  return b * (2 * n * c * c + (2 * options.iterations() + 1) * n * c * k);
}

}  // namespace attnseg
