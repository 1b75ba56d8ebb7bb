// What makes the sequence blocks real, beyond the registry-wide harness (test_blocks.cpp):
// the token host's orders and positions, and each mechanism's defining property
// (../shared/ATTENTION_CATALOG.md, "Sequence blocks").
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "attention/linear.h"
#include "attention/linformer.h"
#include "attention/performer.h"
#include "attention/registry.h"
#include "core/device.h"
#include "core/error.h"
#include "engine/counters.h"
#include "sequence_reference.h"
#include "sequence_test.h"

namespace attnseg {
namespace {

using test::counted_macs;
using test::relative_error;

// --- the token host ---------------------------------------------------------------------

TEST(TokenHost, TilesOrderVisitsEveryPixelOnceAndKeepsEachTileTogether) {
  const int64_t h = 7, w = 10, tile = 4;
  const at::Tensor order = token_permutation(h, w, TokenOrder::tiles, tile);
  ASSERT_EQ(order.numel(), h * w);
  EXPECT_TRUE(torch::equal(std::get<0>(order.sort()), torch::arange(h * w, torch::kLong)));
  // Tiles of the first row of tiles are 4×4, 4×4 and 4×2 (cut at the edge): each a run of
  // consecutive tokens inside one square.
  int64_t start = 0;
  for (const int64_t tile_width : {4, 4, 2}) {
    const at::Tensor run = order.narrow(0, start, 4 * tile_width);
    const at::Tensor y = run.div(w, "floor"), x = run.remainder(w);
    EXPECT_EQ((y.max() - y.min()).item<int64_t>(), 3);
    EXPECT_EQ((x.max() - x.min()).item<int64_t>(), tile_width - 1);
    start += 4 * tile_width;
  }
  EXPECT_TRUE(torch::equal(token_permutation(h, w, TokenOrder::raster, tile), torch::arange(h * w, torch::kLong)));
}

// A core that ignores the order (linear attention without a causal mask) gives the same output
// in raster and tile order: the host lays the tokens out and puts them back where they were.
TEST(TokenHost, TileOrderOutputReturnsToThePixelsItCameFrom) {
  LinearAttentionOptions raster_options(16), tile_options(16);
  tile_options.host().order("tiles").tile(3);
  torch::manual_seed(0);
  LinearAttention raster(raster_options);
  torch::manual_seed(0);
  LinearAttention tiles(tile_options);
  const at::Tensor x = torch::randn({2, 16, 7, 11});
  torch::NoGradGuard no_grad;
  const at::Tensor a = raster->forward(x), b = tiles->forward(x);
  EXPECT_LT(relative_error(b - x, a - x), 1e-5);
}

TEST(TokenHost, SinusoidalEncodingFollowsTheFormulaOnEachAxis) {
  const int64_t c = 10, h = 5, w = 7;
  const at::Tensor pe = functional::sinusoidal_position_2d(c, h, w).to(torch::kDouble);
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{c, h, w}));
  for (int64_t ch = 0; ch < c; ++ch) {
    const bool y_axis = ch < c / 2;
    const int64_t m = y_axis ? c / 2 : c - c / 2, j = y_axis ? ch : ch - c / 2;
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const double angle = (y_axis ? y : x) / std::pow(10000.0, 2.0 * (j / 2) / static_cast<double>(m));
        EXPECT_NEAR(pe[ch][y][x].item<double>(), j % 2 == 0 ? std::sin(angle) : std::cos(angle), 1e-6)
            << "channel " << ch << " at " << y << "," << x;
      }
    }
  }
}

// Learned positions of the trained map size, met at another size: the block runs and the
// positions still steer it (their gradient is not zero).
TEST(TokenHost, LearnedPositionsAreResampledToAMapOfAnotherSize) {
  LinearAttentionOptions options(16);
  options.host().positional("learned").map_size({4, 6});
  torch::manual_seed(0);
  LinearAttention block(options);
  const at::Tensor positions = block->named_parameters()["positions"];
  ASSERT_EQ(positions.sizes(), (std::vector<int64_t>{16, 4, 6}));
  const at::Tensor y = block->forward(torch::randn({1, 16, 9, 13}));
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 16, 9, 13}));
  (y * torch::randn_like(y)).sum().backward();
  EXPECT_GT(positions.grad().abs().sum().item<double>(), 0);
}

TEST(TokenHost, BadOptionsNameTheKey) {
  const Config bad = Config::from_string("{type: linear, linear: {positional: rope}}", "test");
  try {
    configure_block(bad.root(), 16);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("positional"), std::string::npos) << e.what();
  }
}

// The multiply-adds a block reports (the benchmark's MMAC column) are the ones its forward pass
// executes, projections and core, on a map whose token count is not a multiple of the causal
// chunk.
TEST(TokenHost, ExecutedMultiplyAddsEqualTheAnalyticCountOfEverySequenceBlock) {
  LinearAttentionOptions causal(16);
  causal.causal(true).chunk(8);
  std::vector<std::pair<std::string, AttentionBlock>> blocks{
      {"linear", build_block("linear", 16)},       {"linear causal", LinearAttention(causal).ptr()},
      {"performer", build_block("performer", 16)}, {"linformer", build_block("linformer", 16)}};
  for (auto& [name, block] : blocks) {
    block->eval();
    const at::Tensor x = torch::randn({2, 16, 7, 9});
    EXPECT_EQ(counted_macs([&] { block->forward(x); }), block->macs({2, 16, 7, 9})) << name;
  }
}

// A core that records the types of the q, k, v it is given and returns v.
class RecordingCore : public TokenHostImpl {
 public:
  RecordingCore(bool float_qk, TokenInputs reads) : float_qk_(float_qk), reads_(reads) {
    reset_host(TokenHostOptions(16));
  }
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenGrid&) override {
    seen = {q.defined() ? q.scalar_type() : at::kByte, k.defined() ? k.scalar_type() : at::kByte,
            v.scalar_type()};
    return v;
  }
  int64_t core_macs(int64_t, int64_t) const override { return 0; }
  TokenInputs inputs() const override { return reads_; }
  bool float_queries_keys() const override { return float_qk_; }
  std::vector<at::ScalarType> seen;  // q, k, v; kByte: not given

 private:
  bool float_qk_;
  TokenInputs reads_;
};

// Under bf16 autocast a core that makes discrete choices on q and k gets them in float, its
// values still in bf16; a core that reads no keys gets none, and the host builds no key
// projection for it (nor counts one).
TEST(TokenHost, QueriesAndKeysStayFloatUnderAutocastForCoresThatAskAndUnreadProjectionsAreNotBuilt) {
  Runtime runtime;
  runtime.precision = Precision::bf16;
  const at::Tensor x = torch::randn({1, 16, 3, 5});
  auto plain = std::make_shared<RecordingCore>(false, TokenInputs{});
  auto hashing = std::make_shared<RecordingCore>(true, TokenInputs{true, false, true});
  {
    AutocastGuard autocast(runtime);
    plain->forward(x);
    hashing->forward(x);
  }
  EXPECT_EQ(plain->seen, (std::vector<at::ScalarType>{at::kBFloat16, at::kBFloat16, at::kBFloat16}));
  EXPECT_EQ(hashing->seen, (std::vector<at::ScalarType>{at::kFloat, at::kByte, at::kBFloat16}));
  EXPECT_TRUE(plain->named_children().contains("to_k"));
  EXPECT_FALSE(hashing->named_children().contains("to_k"));
  EXPECT_EQ(plain->macs({1, 16, 3, 5}) - hashing->macs({1, 16, 3, 5}), 15 * 16 * 16);
}

// --- linear ---------------------------------------------------------------------------------

TEST(LinearAttention, CausalChunkedFormEqualsTheMaskedDenseFormAtEveryChunkSize) {
  torch::manual_seed(1);
  const auto q = torch::randn({1, 2, 37, 4}), k = torch::randn({1, 2, 37, 4}), v = torch::randn({1, 2, 37, 3});
  const at::Tensor ref = test::linear_attention_reference(q, k, v, /*causal=*/true, 1e-6);
  for (const int64_t chunk : {1, 5, 37, 64}) {
    EXPECT_LT(relative_error(functional::linear_attention(q, k, v, true, 1e-6, chunk), ref), 1e-5) << chunk;
  }
}

TEST(LinearAttention, CausalOutputOfATokenIgnoresEveryLaterToken) {
  torch::manual_seed(2);
  const auto q = torch::randn({1, 1, 23, 4}), k = torch::randn({1, 1, 23, 4}), v = torch::randn({1, 1, 23, 3});
  const at::Tensor before = functional::linear_attention(q, k, v, true, 1e-6, 5);
  at::Tensor k2 = k.clone(), v2 = v.clone();
  k2.narrow(2, 12, 11).normal_();
  v2.narrow(2, 12, 11).normal_();
  const at::Tensor after = functional::linear_attention(q, k2, v2, true, 1e-6, 5);
  EXPECT_TRUE(torch::allclose(before.narrow(2, 0, 12), after.narrow(2, 0, 12), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(before.narrow(2, 12, 11), after.narrow(2, 12, 11), 1e-3, 1e-3));
}

// The cost is linear in N: 4× the tokens, exactly 4× the products, where full attention pays 16×.
TEST(LinearAttention, ProductsGrowLinearlyWithTheTokenCount) {
  auto macs = [](int64_t n) {
    const auto q = torch::randn({1, 2, n, 8}), v = torch::randn({1, 2, n, 8});
    return counted_macs([&] { functional::linear_attention(q, q, v, false, 1e-6); });
  };
  EXPECT_EQ(macs(1024), 4 * macs(256));
}

// --- performer --------------------------------------------------------------------------

TEST(Performer, RandomFeaturesAreOrthogonalInBlocksOfD) {
  torch::manual_seed(3);
  const int64_t m = 20, d = 8;
  const at::Tensor w = functional::orthogonal_random_features(m, d).to(torch::kDouble);
  for (int64_t start = 0; start < m; start += d) {
    const at::Tensor block = w.narrow(0, start, std::min(d, m - start));
    const at::Tensor gram = block.mm(block.t());
    EXPECT_LT((gram - torch::diag(torch::diag(gram))).abs().max().item<double>(), 1e-5) << start;
  }
  // Row norms follow a Gaussian vector's (χ with d degrees of freedom), not all equal.
  EXPECT_GT(w.norm(2, 1).std().item<double>(), 0.1);
}

// FAVOR+'s estimate of softmax attention sharpens with the number of features m: the mean
// error over ten draws falls at each step from m = 16 to 256 to 4096, and from 256 to 4096 to
// below half (an unbiased estimator's spread falls as 1/√m: a quarter for 16× the features).
TEST(Performer, ErrorAgainstSoftmaxAttentionFallsAsFeaturesGrow) {
  torch::manual_seed(4);
  const auto q = torch::randn({1, 2, 97, 16}) * 0.5, k = torch::randn({1, 2, 97, 16}) * 0.5,
             v = torch::randn({1, 2, 97, 8});
  const at::Tensor exact = test::softmax_attention_reference(q, k, v);
  std::vector<double> errors;
  for (const int64_t m : {16, 256, 4096}) {
    double sum = 0;
    for (int draw = 0; draw < 10; ++draw) {
      sum += relative_error(functional::performer_attention(q, k, v, functional::orthogonal_random_features(m, 16)),
                            exact);
    }
    errors.push_back(sum / 10);
  }
  std::printf("performer error against softmax attention: m=16 %.4f, m=256 %.4f, m=4096 %.4f\n", errors[0],
              errors[1], errors[2]);
  EXPECT_LT(errors[1], errors[0]);
  EXPECT_LT(errors[2], 0.5 * errors[1]);
}

TEST(Performer, FeaturesAreRedrawnOnlyInTrainingModeAndOnlyWhenConfigured) {
  auto forwards = [](Performer& block, int times) {
    for (int i = 0; i < times; ++i) block->forward(torch::randn({1, 16, 5, 7}));
  };
  PerformerOptions options(16);
  options.redraw_interval(2);
  torch::manual_seed(5);
  Performer block(options);
  const at::Tensor first = block->projection().clone();
  block->eval();
  forwards(block, 5);
  EXPECT_TRUE(torch::equal(block->projection(), first)) << "redrawn in eval mode";
  block->train();
  forwards(block, 2);
  EXPECT_TRUE(torch::equal(block->projection(), first)) << "redrawn before the interval";
  forwards(block, 1);
  EXPECT_FALSE(torch::equal(block->projection(), first)) << "not redrawn after the interval";

  options.redraw_interval(0);
  Performer fixed(options);
  const at::Tensor kept = fixed->projection().clone();
  fixed->train();
  forwards(fixed, 5);
  EXPECT_TRUE(torch::equal(fixed->projection(), kept)) << "redrawn with redraw_interval 0";
}

TEST(Performer, ProductsGrowLinearlyWithTheTokenCount) {
  const at::Tensor w = functional::orthogonal_random_features(32, 8);
  auto macs = [&](int64_t n) {
    const auto q = torch::randn({1, 2, n, 8}), v = torch::randn({1, 2, n, 8});
    return counted_macs([&] { functional::performer_attention(q, q, v, w); });
  };
  EXPECT_EQ(macs(1024), 4 * macs(256));
}

// --- linformer --------------------------------------------------------------------------

// With k = N and E = F = the identity, the projected keys and values are the keys and values:
// Linformer is full softmax attention.
TEST(Linformer, WithKEqualToNAndIdentityProjectionsItIsFullAttention) {
  LinformerOptions options(16);
  options.k(35).host().map_size({5, 7});
  Linformer block(options);
  {
    torch::NoGradGuard no_grad;
    block->e.copy_(torch::eye(35).view({35, 5, 7}));
    block->f.copy_(torch::eye(35).view({35, 5, 7}));
  }
  torch::manual_seed(6);
  const auto q = torch::randn({2, 4, 35, 4}), k = torch::randn({2, 4, 35, 4}), v = torch::randn({2, 4, 35, 4});
  TokenGrid grid = test::raster_grid(5, 7);
  EXPECT_LT(relative_error(block->attend(q, k, v, grid), test::softmax_attention_reference(q, k, v)), 1e-5);
}

// k stays fixed as the map grows, so the products grow linearly: at 4× the tokens (a map of
// twice the trained height and width, projections resampled) exactly 4× the products.
TEST(Linformer, ProjectedLengthStaysKAsTheMapGrows) {
  LinformerOptions options(16);
  options.k(24).host().map_size({6, 10});
  Linformer block(options);
  for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{6, 10}, {12, 20}, {13, 29}}) {
    TokenGrid grid = test::raster_grid(h, w);
    EXPECT_EQ(block->projection_for(block->e, grid).sizes(), (std::vector<int64_t>{24, h * w}));
  }
  auto macs = [&](int64_t h, int64_t w) {
    TokenGrid grid = test::raster_grid(h, w);
    const auto q = torch::randn({1, 4, h * w, 4});
    return counted_macs([&] { block->attend(q, q, q, grid); });
  };
  EXPECT_EQ(macs(12, 20), 4 * macs(6, 10));
}

// At the trained size the projections are used as learned; at another they are resampled, and
// the block runs there.
TEST(Linformer, RunsAtAResolutionOtherThanTheTrainedOne) {
  LinformerOptions options(16);
  options.k(8).host().map_size({6, 10});
  torch::manual_seed(7);
  Linformer block(options);
  TokenGrid trained = test::raster_grid(6, 10);
  EXPECT_TRUE(torch::equal(block->projection_for(block->e, trained), block->e.flatten(1)));
  const at::Tensor x = torch::randn({1, 16, 13, 29});
  const at::Tensor y = block->forward(x);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
}

}  // namespace
}  // namespace attnseg
