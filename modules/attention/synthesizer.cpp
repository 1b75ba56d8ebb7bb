#include "attention/synthesizer.h"

#include <ATen/ATen.h>

#include <cmath>

namespace attnseg {

namespace functional {
at::Tensor dense_synthesizer_logits(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                                    const at::Tensor& w2, const at::Tensor& b2) {
  const at::Tensor hidden = at::relu(at::matmul(x, w1.to(x.scalar_type())) + b1.unsqueeze(1).to(x.scalar_type()));
  return at::matmul(hidden, w2.to(x.scalar_type())) + b2.unsqueeze(1).to(x.scalar_type());
}

at::Tensor synthesized_attention(const at::Tensor& logits, const at::Tensor& v) {
  return at::matmul(at::softmax(logits, -1).to(v.scalar_type()), v);
}
}  // namespace functional

void SynthesizerOptions::check() const {
  host_.check("synthesizer");
  TORCH_CHECK(kind_ == "dense" || kind_ == "random" || kind_ == "factorized_random",
              "synthesizer: kind must be dense, random or factorized_random, got '", kind_, "'");
  TORCH_CHECK(hidden_ >= 0, "synthesizer: hidden must be positive (or 0: the head width), got ", hidden_);
  TORCH_CHECK(rank_ >= 1, "synthesizer: rank must be at least 1, got ", rank_);
}

SynthesizerImpl::SynthesizerImpl(const SynthesizerOptions& options_) : options(options_) {
  reset();
}

int64_t SynthesizerImpl::hidden_width() const {
  return options.hidden() > 0 ? options.hidden() : options.host().head_width();
}

void SynthesizerImpl::reset() {
  options.check();
  reset_host(options.host());
  // Nothing is compared with a key: the host builds no key projection (inputs()), and for the
  // random kinds, which read no token, no query projection either.
  const int64_t h = options.host().heads(), d = options.host().head_width();
  const int64_t h0 = options.host().map_size()[0], w0 = options.host().map_size()[1], l = h0 * w0;
  auto uniform = [](std::vector<int64_t> shape, int64_t fan_in) {  // nn.Linear's initialisation
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    return torch::rand(shape) * 2 * bound - bound;
  };
  if (options.kind() == "dense") {
    const int64_t r = hidden_width();
    w1 = register_parameter("w1", uniform({h, d, r}, d));
    b1 = register_parameter("b1", uniform({h, r}, d));
    w2 = register_parameter("w2", uniform({h, r, h0, w0}, r));
    b2 = register_parameter("b2", uniform({h, h0, w0}, r));
    return;
  }
  const bool trainable = options.trainable();
  auto add = [&](const std::string& name, const at::Tensor& value) {
    return trainable ? register_parameter(name, value) : register_buffer(name, value);
  };
  if (options.kind() == "random") {
    r = add("r", torch::randn({h, l, l}));
  } else {
    // Each factor at variance 1/√rank, so that R1 R2ᵀ has entries of unit variance like R.
    const double spread = std::pow(static_cast<double>(options.rank()), -0.25);
    r1 = add("r1", torch::randn({h, l, options.rank()}) * spread);
    r2 = add("r2", torch::randn({h, l, options.rank()}) * spread);
  }
}

at::Tensor SynthesizerImpl::logits(const at::Tensor& q, const TokenGrid& grid) const {
  const int64_t h = options.host().heads(), n = grid.length();
  const int64_t h0 = options.host().map_size()[0], w0 = options.host().map_size()[1];
  // The key axis of a per-head table [h, P, h0·w0] → [h, P, N].
  auto keys = [&](const at::Tensor& t) {
    return resample_to_grid(t.reshape({h * t.size(1), h0, w0}), grid).view({h, t.size(1), n});
  };
  if (options.kind() == "dense") {
    return functional::dense_synthesizer_logits(q, w1, b1, keys(w2.flatten(2)),
                                                keys(b2.view({h, 1, h0 * w0})).squeeze(1));
  }
  // The query axis of [h, h0·w0, P] → [h, N, P].
  auto queries = [&](const at::Tensor& t) { return keys(t.transpose(1, 2)).transpose(1, 2); };
  if (options.kind() == "random") return queries(keys(r)).unsqueeze(0);
  return at::matmul(queries(r1), queries(r2).transpose(1, 2)).unsqueeze(0);
}

at::Tensor SynthesizerImpl::attend(const at::Tensor& q, const at::Tensor&, const at::Tensor& v, const TokenGrid& grid) {
  return functional::synthesized_attention(logits(q, grid), v);
}

int64_t SynthesizerImpl::core_macs(int64_t b, int64_t n) const {
  const int64_t h = options.host().heads(), d = options.host().head_width();
  int64_t synthesis = 0;
  if (options.kind() == "dense") synthesis = b * h * n * (d * hidden_width() + hidden_width() * n);
  if (options.kind() == "factorized_random") synthesis = h * n * options.rank() * n;  // R1 R2ᵀ, once per batch
  return synthesis + b * h * n * n * d;                                               // softmax(B) V
}

}  // namespace attnseg
