// Identity: the baseline every attention block is measured against.
#pragma once

#include "attention/block.h"

namespace attnseg {

class IdentityBlockImpl : public AttentionBlockImpl {
 public:
  torch::Tensor forward(const torch::Tensor& x) override { return x; }
  int64_t macs(const std::vector<int64_t>& shape) const override { return 0; }
};

}  // namespace attnseg
