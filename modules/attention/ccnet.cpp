#include "attention/ccnet.h"

#include "attention/functional.h"

namespace attnseg {

void CrissCrossOptions::check() const {
  TORCH_CHECK(channels() > 0, "ccnet: channels must be positive, got ", channels());
  TORCH_CHECK(recurrence() >= 1, "ccnet: recurrence must be at least 1, got ", recurrence());
  TORCH_CHECK(reduction() > 0 && channels() / reduction() >= 1, "ccnet: reduction must be in [1, channels], got ",
              reduction());
  TORCH_CHECK(kernel() == "unfused" || kernel() == "fused", "ccnet: kernel must be unfused or fused, got '",
              kernel(), "'");
}

CrissCrossImpl::CrissCrossImpl(const CrissCrossOptions& options_) : options(options_) { reset(); }

void CrissCrossImpl::reset() {
  options.check();
  const int64_t c = options.channels(), inner = c / options.reduction();
  query_ = register_module("query", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, inner, 1)));
  key_ = register_module("key", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, inner, 1)));
  value_ = register_module("value", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 1)));
  gamma = register_parameter("gamma", torch::full({1}, options.zero_init() ? 0.0 : 1.0));
}

torch::Tensor CrissCrossImpl::pass(const torch::Tensor& x) {
  const auto attention =
      options.kernel() == "fused" ? functional::criss_cross_attention_fused : functional::criss_cross_attention;
  return x + gamma * attention(query_(x), key_(x), value_(x));
}

torch::Tensor CrissCrossImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = x;
  for (int64_t r = 0; r < options.recurrence(); ++r) y = pass(y);
  return y;
}

int64_t CrissCrossImpl::macs(const std::vector<int64_t>& shape) const {
  const int64_t b = shape[0], c = shape[1], h = shape[2], w = shape[3], n = h * w;
  const int64_t inner = c / options.reduction();
  const int64_t projections = b * n * c * (2 * inner + c);
  // Energies and aggregation over the H + W positions of each criss-cross (the masked
  // duplicate of the centre is computed too).
  const int64_t products = b * n * (h + w) * (inner + c);
  return options.recurrence() * (projections + products);
}

}  // namespace attnseg
