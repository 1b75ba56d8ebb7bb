// What makes each vision block real, beyond the shared harness in test_blocks.cpp: the
// reference implementation's numbers (tests/fixtures/, recorded by tools/reference/), the
// cheap order of products equal to the expensive one, and each block's defining property.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "attention/efficient.h"
#include "fixture.h"

namespace attnseg {
namespace {

using test::copy_weights;
using test::load_fixture;
using test::max_relative_error;

// --- efficient -------------------------------------------------------------------------

TEST(Efficient, MatchesTheReferenceImplementation) {
  const test::Fixture f = load_fixture("efficient");
  EfficientAttention block(EfficientAttentionOptions(16));
  block->to(torch::kDouble);
  std::vector<std::pair<std::string, std::string>> names;
  for (const std::string conv : {"keys", "queries", "values", "reprojection"}) {
    names.push_back({conv + ".weight", conv + ".weight"});
    names.push_back({conv + ".bias", conv + ".bias"});
  }
  copy_weights(*block, f, names);
  EXPECT_LT(max_relative_error(block->forward(f["x"]), f["y"]), 1e-12);
}

TEST(Efficient, LinearOrderEqualsTheDenseForm) {
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const at::Tensor q = torch::randn({2, 6, 9, 11}, opts), k = torch::randn({2, 6, 9, 11}, opts),
                   v = torch::randn({2, 4, 9, 11}, opts);
  const int64_t heads = 2, n = 99;
  // Dense: the N×N map ρq(Q)ρk(K)ᵀ formed explicitly, then applied to V.
  const at::Tensor qh = q.reshape({4, 3, n}).softmax(1), kh = k.reshape({4, 3, n}).softmax(2);
  const at::Tensor attention = at::bmm(qh.transpose(1, 2), kh);  // [BH, N, N]
  const at::Tensor dense = at::bmm(attention, v.reshape({4, 2, n}).transpose(1, 2)).transpose(1, 2);
  EXPECT_LT(max_relative_error(functional::efficient_attention(q, k, v, heads), dense.reshape({2, 4, 9, 11})),
            1e-12);
}

TEST(Efficient, MultiplyAddsMatchHandCount) {
  // C=16, dk=dv=8, 2 heads, N=35, B=1: projections 35·16·(8+8+8) + 35·8·16, products 2·2·35·4·4.
  EfficientAttention block(EfficientAttentionOptions(16));
  EXPECT_EQ(block->macs({1, 16, 5, 7}), 35 * 16 * 24 + 35 * 8 * 16 + 2 * 2 * 35 * 4 * 4);
}

}  // namespace
}  // namespace attnseg
