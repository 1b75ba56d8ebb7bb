// The effective receptive field measure (engine/erf.h) on blocks whose answer is known: the
// identity reaches its own pixel, one criss-cross pass exactly its row and column, two passes
// and non-local attention the whole map, and the 1% threshold is taken against the largest
// gradient away from the position.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "attention/ccnet.h"
#include "attention/nonlocal.h"
#include "attention/registry.h"
#include "engine/erf.h"

namespace attnseg {
namespace {

constexpr int64_t kH = 7, kW = 11;

// Row y and column x of an H×W map.
at::Tensor cross(int64_t y, int64_t x) {
  at::Tensor mask = at::zeros({kH, kW}, at::kBool);
  mask.select(0, y).fill_(true);
  mask.select(1, x).fill_(true);
  return mask;
}

TEST(Erf, IdentityReachesOnlyItsOwnPixel) {
  const AttentionBlock block = build_block("none", 8);
  const at::Tensor input = at::randn({1, 8, kH, kW});
  for (const auto& [y, x] : erf_positions(kH, kW)) {
    for (double threshold : {0.0, 0.01}) {
      const at::Tensor support = erf_support(*block, input, y, x, threshold);
      EXPECT_EQ(support.sum().item<int64_t>(), 1);
      EXPECT_TRUE(support[y][x].item<bool>());
    }
  }
  EXPECT_DOUBLE_EQ(effective_receptive_field(*block, {input}), 1.0 / (kH * kW));
}

TEST(Erf, OneCrissCrossPassReachesExactlyItsRowAndColumn) {
  torch::manual_seed(3);
  CrissCross block(CrissCrossOptions(16).recurrence(1).zero_init(false));
  block->eval();
  const at::Tensor input = at::randn({1, 16, kH, kW});
  for (const auto& [y, x] : erf_positions(kH, kW)) {
    EXPECT_TRUE(at::equal(erf_support(*block, input, y, x, 0.0), cross(y, x))) << "position " << y << "," << x;
  }
  EXPECT_NEAR(effective_receptive_field(*block, {input}, 0.0), (kH + kW - 1.0) / (kH * kW), 1e-12);
}

TEST(Erf, TwoCrissCrossPassesAndNonLocalReachTheWholeMap) {
  torch::manual_seed(4);
  CrissCross two(CrissCrossOptions(16).recurrence(2).zero_init(false));
  NonLocal nonlocal(NonLocalOptions(16).zero_init(false));
  two->eval();
  nonlocal->eval();
  const at::Tensor input = at::randn({1, 16, kH, kW});
  EXPECT_DOUBLE_EQ(effective_receptive_field(*two, {input}, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(effective_receptive_field(*nonlocal, {input}, 0.0), 1.0);
}

// y = x + 0.5·(left neighbour) + c·(right neighbour), per channel: the gradient of an output is
// 1 at its own pixel, 0.5 at its left and c at its right.
class Neighbours : public AttentionBlockImpl {
 public:
  explicit Neighbours(double c) : c_(c) {}
  torch::Tensor forward(const torch::Tensor& x) override {
    using at::indexing::Slice;
    at::Tensor y = x.clone();
    y.index({Slice(), Slice(), Slice(), Slice(1, at::indexing::None)}) += 0.5 * x.index({Slice(), Slice(), Slice(), Slice(0, -1)});
    y.index({Slice(), Slice(), Slice(), Slice(0, -1)}) += c_ * x.index({Slice(), Slice(), Slice(), Slice(1, at::indexing::None)});
    return y;
  }
  int64_t macs(const std::vector<int64_t>&) const override { return 0; }

 private:
  double c_;
};

TEST(Erf, ThresholdIsAShareOfTheLargestGradientAwayFromThePosition) {
  const at::Tensor input = at::randn({1, 4, kH, kW});
  // The largest gradient other than the position's own is 0.5: 1% of it is 0.005.
  Neighbours above(0.006), below(0.004);
  EXPECT_EQ(erf_support(above, input, 3, 5, 0.01).sum().item<int64_t>(), 3);
  EXPECT_EQ(erf_support(below, input, 3, 5, 0.01).sum().item<int64_t>(), 2);
  EXPECT_EQ(erf_support(below, input, 3, 5, 0.0).sum().item<int64_t>(), 3);
  // At the left edge the left neighbour is missing: the right one is then the largest.
  EXPECT_EQ(erf_support(below, input, 3, 0, 0.01).sum().item<int64_t>(), 2);
}

}  // namespace
}  // namespace attnseg
