// What makes the patterned sparse blocks real, beyond the registry-wide harness
// (test_blocks.cpp): the pattern engine computes exactly the declared pattern and never the
// N×N scores, and each block's pattern is its paper's (../shared/ATTENTION_CATALOG.md,
// "Sequence blocks").
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "attention/bigbird.h"
#include "attention/bp_transformer.h"
#include "attention/diet.h"
#include "attention/etc.h"
#include "attention/gmat.h"
#include "attention/handcrafted.h"
#include "attention/jukebox.h"
#include "attention/longformer.h"
#include "attention/multiscale.h"
#include "attention/pattern.h"
#include "attention/registry.h"
#include "attention/sparse_transformer.h"
#include "attention/star.h"
#include "config/config.h"
#include "engine/counters.h"
#include "sequence_test.h"

namespace attnseg {
namespace {

using test::counted_macs;
using test::raster_grid;
using test::relative_error;

const std::vector<std::string> kPatterned{"sparse_transformer", "longformer", "bigbird",    "etc",
                                          "star",               "bp_transformer", "diet", "multiscale",
                                          "jukebox",            "gmat",       "handcrafted"};

std::shared_ptr<PatternedBlockImpl> patterned(const std::string& name, int64_t channels = 16) {
  auto block = std::dynamic_pointer_cast<PatternedBlockImpl>(build_block(name, channels));
  EXPECT_TRUE(block) << name << " is not on the pattern engine";
  return block;
}

// --- the engine ------------------------------------------------------------------------------

// A random pattern per head, with repeated keys, invalid slots and a query that reads nothing,
// over more keys than queries, computed in chunks that do not divide N: the same output and
// gradients as dense softmax attention under the pattern's mask, in float64.
TEST(PatternEngine, PatternedAttentionEqualsDenseMaskedAttentionAndItsGradients) {
  torch::manual_seed(0);
  const int64_t b = 2, h = 3, n = 23, m = 29, p = 7, d = 5;
  at::Tensor index = torch::randint(0, m, {h, n, p}, torch::kLong);
  at::Tensor valid = torch::rand({h, n, p}) < 0.7;
  valid[1][4].fill_(false);  // query 4 of head 1 reads nothing
  const Pattern pattern{index, valid};
  auto options = torch::TensorOptions(torch::kDouble).requires_grad(true);
  const at::Tensor q = torch::randn({b, h, n, d}, options), k = torch::randn({b, h, m, d}, options),
                   v = torch::randn({b, h, m, d}, options);
  // A repeated (query, key) slot counts once in the dense mask, so drop the repeats as
  // concat_patterns does before comparing.
  const Pattern once = concat_patterns({pattern});
  const at::Tensor out = functional::patterned_attention(q, k, v, once, 0.4, /*chunk=*/6);
  const at::Tensor ref = functional::masked_attention(q, k, v, functional::dense_mask(once, m), 0.4);
  EXPECT_LT(relative_error(out, ref), 1e-12);
  EXPECT_EQ(out[0][1][4].abs().max().item<double>(), 0.0);
  const at::Tensor g = torch::randn_like(out);
  const auto grads = torch::autograd::grad({out}, {q, k, v}, {g});
  const auto ref_grads = torch::autograd::grad({ref}, {q, k, v}, {g});
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_LT(relative_error(grads[i], ref_grads[i]), 1e-12) << i;
}

// The same pattern computed tile by tile: queries in tiles of unequal sizes that are not
// neighbours, each scored against its tile's union of keys and masked to its own; chunks of
// tiles that do not divide their count.
TEST(PatternEngine, TiledAttentionEqualsPerQueryAttentionAndItsGradients) {
  torch::manual_seed(4);
  const int64_t n = 31, m = 37, p = 6, d = 5;
  const Pattern pattern = concat_patterns({Pattern{torch::randint(0, m, {1, n, p}, torch::kLong),
                                                   torch::rand({1, n, p}) < 0.8}});
  const at::Tensor tile_of = torch::randperm(n, torch::kLong).remainder(7);  // 7 tiles of 4 or 5
  const TiledPattern tiles = tile_pattern(pattern, tile_of);
  ASSERT_EQ(tiles.members.size(0), 7);
  auto options = torch::TensorOptions(torch::kDouble).requires_grad(true);
  const at::Tensor q = torch::randn({2, 3, n, d}, options), k = torch::randn({2, 3, m, d}, options),
                   v = torch::randn({2, 3, m, d}, options);
  const at::Tensor out = functional::tiled_attention(q, k, v, tiles, 0.7, /*chunk=*/3);
  const at::Tensor ref = functional::patterned_attention(q, k, v, pattern, 0.7);
  EXPECT_LT(relative_error(out, ref), 1e-12);
  const at::Tensor g = torch::randn_like(out);
  const auto grads = torch::autograd::grad({out}, {q, k, v}, {g});
  const auto ref_grads = torch::autograd::grad({ref}, {q, k, v}, {g});
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_LT(relative_error(grads[i], ref_grads[i]), 1e-12) << i;
}

TEST(PatternEngine, ConcatReadsAKeyThatTwoPartsShareOnce) {
  const Pattern window = offset_pattern(5, 7, window_offsets(1, 1));
  const Pattern globals = same_keys(35, torch::tensor({17, 0}, torch::kLong));  // 17 is (2, 3)
  const Pattern both = concat_patterns({window, globals});
  EXPECT_EQ(both.reads(17), (std::vector<int64_t>{0, 9, 10, 11, 16, 17, 18, 23, 24, 25}));
  EXPECT_EQ(both.reads(0), (std::vector<int64_t>{0, 1, 7, 8, 17}));
  EXPECT_EQ(functional::dense_mask(both, 35).sum().item<int64_t>(), both.pairs());
}

TEST(PatternEngine, OffsetPatternReadsOnlyPixelsOnTheMap) {
  const Pattern dilated = offset_pattern(6, 9, window_offsets(1, 1, 3));
  EXPECT_EQ(dilated.reads(0), (std::vector<int64_t>{0, 3, 27, 30}));                  // corner (0, 0)
  EXPECT_EQ(dilated.reads(4 * 9 + 4).size(), 6u);                                      // (4, 4): rows 1, 4
  EXPECT_EQ(dilated.reads(3 * 9 + 4), (std::vector<int64_t>{1, 4, 7, 28, 31, 34}));      // (3, 4): row 6 is off
}

TEST(PatternEngine, PooledCellsAreTheMeansOfTheirPixelsWithEdgeCellsCutToTheMap) {
  const int64_t h = 5, w = 7, cell = 2;
  const at::Tensor t = torch::randn({1, 2, h * w, 3}, torch::kDouble);
  const at::Tensor pooled = functional::pool_cells(t, h, w, cell);
  const auto cells = cell_pixels(h, w, cell);
  ASSERT_EQ(pooled.size(2), static_cast<int64_t>(cells.size()));
  ASSERT_EQ(cells.size(), 12u);
  for (size_t c = 0; c < cells.size(); ++c) {
    const at::Tensor mean = t.index_select(2, torch::tensor(cells[c], torch::kLong)).mean(2);
    EXPECT_LT((pooled.select(2, static_cast<int64_t>(c)) - mean).abs().max().item<double>(), 1e-12) << c;
  }
  EXPECT_EQ(cells.back(), (std::vector<int64_t>{34}));  // the corner cell holds one pixel
}

TEST(PatternEngine, RegionsCutTheMapIntoDisjointPiecesThatCoverIt) {
  const Regions cut = map_regions(7, 11, 2, 3);
  ASSERT_EQ(cut.count(), 6);
  std::vector<int64_t> seen;
  for (int64_t r = 0; r < cut.count(); ++r) {
    seen.insert(seen.end(), cut.pixels[r].begin(), cut.pixels[r].end());
    EXPECT_TRUE(std::binary_search(cut.pixels[r].begin(), cut.pixels[r].end(), cut.centre[r])) << r;
    for (const int64_t p : cut.pixels[r]) EXPECT_EQ(cut.region_of[p].item<int64_t>(), r);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, every_pixel(7, 11));
}

// --- every patterned block ---------------------------------------------------------------------

class PatternedBlock : public ::testing::TestWithParam<std::string> {};

// The pixels whose input reaches one output pixel, read off the gradient of the block in
// float64 (the residual included), against the pixels the block's declared pattern names: an
// interior pixel and a border pixel of a 9×13 map. A block that computed more than it declares
// (a dense core behind a mask) or less would differ.
TEST_P(PatternedBlock, GradientSupportOfAnInteriorAndABorderPixelIsTheDeclaredPattern) {
  torch::manual_seed(1);
  auto block = patterned(GetParam());
  block->to(torch::kDouble);
  block->eval();
  const int64_t h = 9, w = 13, n = h * w;
  for (const int64_t query : {4 * w + 6, (h - 1) * w + 1}) {
    const at::Tensor x = torch::randn({1, 16, h, w}, torch::TensorOptions(torch::kDouble).requires_grad(true));
    const at::Tensor out = block->forward(x);
    const at::Tensor grad = torch::autograd::grad({out.flatten(2).select(2, query).sum()}, {x})[0];
    const at::Tensor reached = grad.abs().sum(1).flatten().nonzero().flatten();
    std::vector<int64_t> support(reached.data_ptr<int64_t>(), reached.data_ptr<int64_t>() + reached.numel());
    EXPECT_EQ(support, block->declared_support(h, w, query)) << GetParam() << " at pixel " << query << " of " << n;
  }
}

// The same output whatever order the host lays the tokens out in: the patterns are 2-D.
TEST_P(PatternedBlock, TileOrderGivesTheRasterOutput) {
  auto build = [&](const std::string& order) {
    torch::manual_seed(2);
    const Config config = Config::from_string("order: " + order + "\ntile: 3\n", "test");
    return find_block(GetParam(), "test").configure(16, config.root(), false)();
  };
  AttentionBlock raster = build("raster"), tiles = build("tiles");
  raster->eval();
  tiles->eval();
  const at::Tensor x = torch::randn({2, 16, 7, 11});
  torch::NoGradGuard no_grad;
  EXPECT_LT(relative_error(tiles->forward(x) - x, raster->forward(x) - x), 1e-5) << GetParam();
}

TEST_P(PatternedBlock, ExecutedMultiplyAddsEqualTheAnalyticCount) {
  AttentionBlock block = build_block(GetParam(), 16);
  block->eval();
  for (const auto& size : {std::vector<int64_t>{2, 16, 7, 9}, std::vector<int64_t>{1, 16, 12, 5}}) {
    const at::Tensor x = torch::randn(size);
    EXPECT_EQ(counted_macs([&] { block->forward(x); }), block->macs(size)) << GetParam() << " " << size[2] << "x"
                                                                             << size[3];
  }
}

// Peak tensor memory of a forward pass (the pattern built beforehand) on a 24×40 and a 96×160
// map against a bound linear in N: per token its pattern row (8-byte index and 1-byte flag per
// slot and group) and 64 copies of its C channels, plus one chunk of gathered slots (keys,
// values, scores, weights: 8 arrays of chunk·P·h·d floats). Dense attention behind a mask needs
// N²·h floats for its scores alone: 3.8 GB at 96×160, 30 times the bound.
TEST_P(PatternedBlock, PeakMemoryStaysUnderABoundLinearInTheTokens) {
  const int64_t c = 16;
  auto block = patterned(GetParam(), c);
  block->eval();
  torch::NoGradGuard no_grad;
  for (const auto& [h, w] : {std::pair<int64_t, int64_t>{24, 40}, {96, 160}}) {
    const at::Tensor x = torch::randn({1, c, h, w});
    block->forward(x);  // builds and caches the pattern
    const Pattern pattern = block->build_pattern(h, w);
    const int64_t n = h * w, p = pattern.width(), g = pattern.groups();
    const int64_t heads = block->host_options().heads(), d = block->host_options().head_width();
    const int64_t bound = n * (p * g * 9 + 64 * c * 4) + 8 * 1024 * p * heads * d * 4;
    PeakMemory memory;
    block->forward(x);
    EXPECT_LE(memory.peak_bytes(), bound) << GetParam() << " at " << h << "x" << w;
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, PatternedBlock, ::testing::ValuesIn(kPatterned),
                         [](const auto& info) { return info.param; });

// --- longformer --------------------------------------------------------------------------------

// With a window that covers the map every pixel reads every pixel: full softmax attention, both
// without global tokens and with them when their own projections equal the window's.
TEST(Longformer, WithAWindowCoveringTheMapItIsFullAttention) {
  const int64_t h = 5, w = 7;
  for (const bool with_globals : {false, true}) {
    LongformerOptions options(16);
    options.window(2 * w + 1).global_grid(with_globals ? std::vector<int64_t>{2, 2} : std::vector<int64_t>{0, 0});
    Longformer block(options);
    block->to(torch::kDouble);
    block->eval();
    const at::Tensor x = torch::randn({2, 16, h, w}, torch::kDouble);
    // The reference: dense attention through the window's projections, copied into the global ones.
    auto named = block->named_parameters();
    torch::NoGradGuard no_grad;
    if (with_globals) {
      for (const std::string kind : {"q", "k", "v"}) {
        const std::string global = kind == "q" ? "query_global" : kind == "k" ? "key_global" : "value_global";
        named[global + ".weight"].copy_(named["to_" + kind + ".weight"]);
        named[global + ".bias"].copy_(named["to_" + kind + ".bias"]);
      }
    }
    const int64_t n = h * w;
    const at::Tensor mask = torch::ones({1, n, n}, torch::kBool);
    const TokenGrid grid = raster_grid(h, w);
    const at::Tensor q = torch::randn({2, 4, n, 4}, torch::kDouble), k = torch::randn_like(q), v = torch::randn_like(q);
    TokenGrid inputs = grid;
    inputs.qk_input = torch::randn({2, n, 16}, torch::kDouble);
    inputs.value_input = torch::randn({2, n, 16}, torch::kDouble);
    at::Tensor out = block->attend_raster(q, k, v, inputs);
    at::Tensor ref = functional::masked_attention(q, k, v, mask, 0.5);
    if (with_globals) {
      // The global rows come from the global projections of the inputs; every other row is the
      // dense row of q, k, v.
      const std::vector<int64_t> globals = block->global_pixels(h, w);
      ASSERT_EQ(globals.size(), 4u);
      auto split = [&](const at::Tensor& t) { return t.view({2, n, 4, 4}).transpose(1, 2); };
      const at::Tensor gq = split(block->query_global(inputs.qk_input)), gk = split(block->key_global(inputs.qk_input)),
                       gv = split(block->value_global(inputs.value_input));
      const at::Tensor dense_global = functional::masked_attention(gq, gk, gv, mask, 0.5);
      const at::Tensor at = torch::tensor(globals, torch::kLong);
      ref = ref.index_copy(2, at, dense_global.index_select(2, at));
    }
    EXPECT_LT(relative_error(out, ref), 1e-12) << "globals " << with_globals;
  }
}

TEST(Longformer, GlobalTokensStayFixedInNumberAndAreReadByEveryPixel) {
  Longformer block(LongformerOptions(16));
  for (const auto& [h, w] : {std::pair<int64_t, int64_t>{8, 48}, {61, 83}}) {
    const std::vector<int64_t> globals = block->global_pixels(h, w);
    EXPECT_EQ(globals.size(), 8u);
    const Pattern pattern = block->build_pattern(h, w);
    for (const int64_t query : {int64_t{0}, h * w / 2, h * w - 1}) {
      const auto reads = pattern.reads(query);
      for (const int64_t global : globals) EXPECT_TRUE(std::binary_search(reads.begin(), reads.end(), global));
      EXPECT_LE(reads.size(), 49u + 8u);
    }
  }
}

// --- bigbird -------------------------------------------------------------------------------

// A query block reads the 3×3 blocks around it, the global blocks (the first and the last) and
// three random blocks, each block once and the three kinds disjoint.
TEST(BigBird, AQueryBlockReadsItsWindowTheGlobalBlocksAndRandomBlocks) {
  BigBird block(BigBirdOptions(16));
  const int64_t h = 21, w = 33;  // 6×9 blocks of 4, the last row and column cut
  const BigBirdLayout layout = block->layout(h, w);
  ASSERT_EQ(layout.rows, 6);
  ASSERT_EQ(layout.cols, 9);
  EXPECT_EQ(layout.global, (std::vector<int64_t>{0, 53}));
  const int64_t id = 3 * 9 + 4;
  EXPECT_EQ(layout.window[id], (std::vector<int64_t>{21, 22, 23, 30, 31, 32, 39, 40, 41}));
  ASSERT_EQ(layout.random[id].size(), 3u);
  std::set<int64_t> kinds(layout.window[id].begin(), layout.window[id].end());
  for (const int64_t g : layout.global) EXPECT_TRUE(kinds.insert(g).second);
  for (const int64_t r : layout.random[id]) EXPECT_TRUE(kinds.insert(r).second);
  // Every pixel of the block reads exactly the pixels of those 14 blocks.
  std::vector<int64_t> expected;
  for (const int64_t key_block : kinds) expected.insert(expected.end(), layout.pixels[key_block].begin(), layout.pixels[key_block].end());
  std::sort(expected.begin(), expected.end());
  const Pattern pattern = block->build_pattern(h, w);
  for (const int64_t query : layout.pixels[id]) EXPECT_EQ(pattern.reads(query), expected);
}

TEST(BigBird, RandomBlocksAreDrawnAnewInTrainingAndFixedInEvaluation) {
  BigBird block(BigBirdOptions(16));
  const at::Tensor x = torch::randn({1, 16, 16, 24});
  block->train();
  torch::manual_seed(3);
  const at::Tensor first = block->forward(x);
  const at::Tensor second = block->forward(x);
  EXPECT_GT((first - second).abs().max().item<double>(), 1e-4);  // other random blocks
  torch::manual_seed(3);
  EXPECT_TRUE(torch::allclose(block->forward(x), first));  // the seed fixes them
  block->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(block->forward(x), block->forward(x)));
  EXPECT_EQ(block->layout(16, 24).random, block->layout(16, 24).random);
}

// --- etc -----------------------------------------------------------------------------------

// g2g and g2l: a global token reads every global token and the pixels of its own region; l2l
// and l2g: a pixel reads its window and every global token; and the block's output is the two
// steps computed densely under those masks.
TEST(Etc, TheFourPiecesAndTheTwoStepsEqualDenseAttentionUnderTheirMasks) {
  EtcOptions options(16);
  options.window(3).global_grid({2, 3});
  Etc block(options);
  const int64_t h = 7, w = 10, n = h * w;
  const Regions cut = block->regions(h, w);
  ASSERT_EQ(cut.count(), 6);
  const Pattern globals = block->global_pattern(h, w), locals = block->build_pattern(h, w);
  for (int64_t g = 0; g < 6; ++g) {
    std::vector<int64_t> expected = cut.pixels[g];
    for (int64_t other = 0; other < 6; ++other) expected.push_back(n + other);
    EXPECT_EQ(globals.reads(g), expected) << "global " << g;
  }
  std::vector<int64_t> corner{0, 1, w, w + 1};
  for (int64_t other = 0; other < 6; ++other) corner.push_back(n + other);
  EXPECT_EQ(locals.reads(0), corner);

  const at::Tensor q = torch::randn({1, 4, n, 4}, torch::kDouble), k = torch::randn_like(q), v = torch::randn_like(q);
  const at::Tensor out = block->attend_raster(q, k, v, raster_grid(h, w));
  const at::Tensor gq = functional::region_means(q, cut), gk = functional::region_means(k, cut),
                   gv = functional::region_means(v, cut);
  const at::Tensor updated = functional::masked_attention(gq, torch::cat({k, gk}, 2), torch::cat({v, gv}, 2),
                                                          functional::dense_mask(globals, n + 6), 0.5);
  const at::Tensor ref = functional::masked_attention(q, torch::cat({k, gk}, 2), torch::cat({v, updated}, 2),
                                                      functional::dense_mask(locals, n + 6), 0.5);
  EXPECT_LT(relative_error(out, ref), 1e-12);
}

// --- star ----------------------------------------------------------------------------------

// A satellite's update depends on its neighbours' keys and values and on the relay, and on no
// other token.
TEST(Star, ASatellitesUpdateDependsOnlyOnItsNeighboursAndTheRelay) {
  const int64_t h = 6, w = 9, n = h * w;
  auto options = torch::TensorOptions(torch::kDouble).requires_grad(true);
  const at::Tensor q = torch::randn({1, 2, n, 3}, torch::kDouble), k = torch::randn({1, 2, n, 3}, options),
                   v = torch::randn({1, 2, n, 3}, options), rk = torch::randn({1, 2, 1, 3}, options),
                   rv = torch::randn({1, 2, 1, 3}, options);
  const at::Tensor out = functional::star_satellites(q, k, v, rk, rv, h, w, 1);
  for (const int64_t query : {int64_t{0}, 2 * w + 4}) {
    const auto grads = torch::autograd::grad({out.select(2, query).sum()}, {k, v, rk, rv}, {}, true);
    const at::Tensor touched = (grads[0].abs().sum({0, 1, 3}) + grads[1].abs().sum({0, 1, 3})).nonzero().flatten();
    const int64_t y = query / w, x = query % w;
    std::vector<int64_t> expected;
    for (int64_t yy = std::max<int64_t>(y - 1, 0); yy <= std::min(y + 1, h - 1); ++yy) {
      for (int64_t xx = std::max<int64_t>(x - 1, 0); xx <= std::min(x + 1, w - 1); ++xx) expected.push_back(yy * w + xx);
    }
    EXPECT_EQ(std::vector<int64_t>(touched.data_ptr<int64_t>(), touched.data_ptr<int64_t>() + touched.numel()),
              expected);
    EXPECT_GT(grads[2].abs().sum().item<double>(), 0.0);
    EXPECT_GT(grads[3].abs().sum().item<double>(), 0.0);
  }
}

// --- bp_transformer --------------------------------------------------------------------------

// Every pixel of an odd-sized map lies under exactly one of the nodes a query reads, for every
// query, and the number of nodes an interior query reads grows by 3·(2r+1)² = 27 per doubling of
// the side: logarithmically in N. On a side of 2^(L+1) an interior query reads its 9 near
// pixels, 27 nodes at each level below the top one and, at the top level (4×4 nodes), the 7
// that are not near it: 9 + 27·(L−1) + 7.
TEST(BpTransformer, AttendedNodesTileTheMapOnceAndGrowWithTheLogOfTheSide) {
  BpTransformer block(BpTransformerOptions(16));
  {
    const int64_t h = 13, w = 19, n = h * w;
    const Pattern pattern = block->build_pattern(h, w);
    const auto sources = block->extra_key_sources(h, w);
    for (int64_t query = 0; query < n; ++query) {
      std::vector<int64_t> covered;
      for (const int64_t key : pattern.reads(query)) {
        if (key < n) {
          covered.push_back(key);
        } else {
          covered.insert(covered.end(), sources[key - n].begin(), sources[key - n].end());
        }
      }
      std::sort(covered.begin(), covered.end());
      ASSERT_EQ(covered, every_pixel(h, w)) << "query " << query;
    }
  }
  std::vector<int64_t> counts;
  for (const int64_t side : {16, 32, 64, 128}) {
    const Pattern pattern = block->build_pattern(side, side);
    counts.push_back(static_cast<int64_t>(pattern.reads((side / 2 + 1) * side + side / 2 + 1).size()));
    EXPECT_EQ(block->levels(side, side), side == 16 ? 3 : side == 32 ? 4 : side == 64 ? 5 : 6);
  }
  EXPECT_EQ(counts, (std::vector<int64_t>{9 + 27 * 2 + 7, 9 + 27 * 3 + 7, 9 + 27 * 4 + 7, 9 + 27 * 5 + 7}));
}

// Far pixels are read only through their node's mean: two pixels under one far node get the
// same key gradient from a query; two near pixels (read one by one) do not.
TEST(BpTransformer, PixelsUnderOneFarNodeGetTheSameKeyGradient) {
  BpTransformer block(BpTransformerOptions(16));
  const int64_t side = 16, n = side * side;
  const at::Tensor q = torch::randn({1, 4, n, 4}, torch::kDouble), v = torch::randn_like(q);
  const at::Tensor k = torch::randn_like(q).requires_grad_(true);
  const int64_t query = 1 * side + 1;
  const at::Tensor out = block->attend_raster(q, k, v, raster_grid(side, side));
  const at::Tensor grad = torch::autograd::grad({out.select(2, query).sum()}, {k})[0];
  // (12, 12) and (15, 15) are under one level-2 node (rows 12–15, columns 12–15) far from (1, 1).
  EXPECT_LT((grad.select(2, 12 * side + 12) - grad.select(2, 15 * side + 15)).abs().max().item<double>(), 1e-12);
  EXPECT_GT(grad.select(2, 12 * side + 12).abs().max().item<double>(), 0.0);
  EXPECT_GT((grad.select(2, 0) - grad.select(2, 2)).abs().max().item<double>(), 1e-6);
}

// --- diet ----------------------------------------------------------------------------------

TEST(Diet, HeadIReadsTheWindowDilatedByItsDilation) {
  Diet block(DietOptions(16));
  const int64_t h = 19, w = 21, y = 9, x = 10;
  const Pattern pattern = block->build_pattern(h, w);
  ASSERT_EQ(pattern.groups(), 4);
  for (int64_t head = 0; head < 4; ++head) {
    const int64_t dilation = int64_t{1} << head;
    std::vector<int64_t> expected;
    for (int64_t dy = -1; dy <= 1; ++dy) {
      for (int64_t dx = -1; dx <= 1; ++dx) expected.push_back((y + dy * dilation) * w + x + dx * dilation);
    }
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(pattern.reads(y * w + x, head), expected) << "head " << head;
  }
  DietOptions configured(16);
  configured.dilations({3, 1, 5, 2});
  EXPECT_EQ(Diet(configured)->build_pattern(h, w).reads(y * w + x, 2).front(), (y - 5) * w + x - 5);
}

// --- multiscale ----------------------------------------------------------------------------

// levels coarse scales, each a (2r+1)² window of cells of side 2^ℓ around the token's own cell.
TEST(Multiscale, EachConfiguredLevelAddsAWindowOfPooledCells) {
  MultiscaleOptions options(16);
  options.levels(3).radius(1);
  Multiscale block(options);
  const int64_t h = 40, w = 48, n = h * w, y = 21, x = 26;
  const auto reads = block->build_pattern(h, w).reads(y * w + x);
  const auto sources = block->extra_key_sources(h, w);
  std::vector<int64_t> per_level(4, 0);
  for (const int64_t key : reads) {
    if (key < n) {
      ++per_level[0];
      continue;
    }
    const int64_t size = static_cast<int64_t>(sources[key - n].size());
    const int64_t level = size == 4 ? 1 : size == 16 ? 2 : size == 64 ? 3 : -1;
    ASSERT_GE(level, 1) << "a cell of " << size << " pixels";
    ++per_level[level];
  }
  EXPECT_EQ(per_level, (std::vector<int64_t>{9, 9, 9, 9}));
  EXPECT_EQ(sources.size(), static_cast<size_t>(20 * 24 + 10 * 12 + 5 * 6));
}

// --- jukebox -------------------------------------------------------------------------------

TEST(Jukebox, HeadsReadTheRowTheColumnAndThePreviousRowAndRowThenColumnReachesAll) {
  Jukebox block(JukeboxOptions(16));
  const int64_t h = 5, w = 7, n = h * w, y = 3, x = 2;
  const Pattern pattern = block->build_pattern(h, w);
  std::vector<int64_t> row, column, above;
  for (int64_t i = 0; i < w; ++i) row.push_back(y * w + i);
  for (int64_t i = 0; i < h; ++i) column.push_back(i * w + x);
  for (int64_t i = 0; i < w; ++i) above.push_back((y - 1) * w + i);
  EXPECT_EQ(pattern.reads(y * w + x, 0), row);
  EXPECT_EQ(pattern.reads(y * w + x, 1), column);
  EXPECT_EQ(pattern.reads(y * w + x, 2), above);
  EXPECT_EQ(pattern.reads(y * w + x, 3), row);
  EXPECT_TRUE(pattern.reads(x, 2).empty());
  const at::Tensor mask = functional::dense_mask(pattern, n).to(torch::kFloat);
  EXPECT_TRUE((torch::matmul(mask[0], mask[1]) > 0).all().item<bool>());
}

TEST(Jukebox, ThePreviousRowHeadGivesZeroOnTheFirstRow) {
  Jukebox block(JukeboxOptions(16));
  const int64_t h = 4, w = 6;
  const at::Tensor q = torch::randn({1, 4, h * w, 4}), k = torch::randn_like(q), v = torch::randn_like(q);
  const at::Tensor out = block->attend_raster(q, k, v, raster_grid(h, w));
  EXPECT_EQ(out[0][2].narrow(0, 0, w).abs().max().item<float>(), 0.0f);
  EXPECT_GT(out[0][2].narrow(0, w, w).abs().max().item<float>(), 0.0f);
}

// --- sparse_transformer ----------------------------------------------------------------------

TEST(SparseTransformer, StridedAndFixedMasksAreThePapersAndTwoStepsReachEveryToken) {
  const int64_t h = 7, w = 9, n = h * w;
  for (const std::string kind : {"strided", "fixed"}) {
    for (const int64_t stride : {0, 5}) {
      SparseTransformerOptions options(16);
      options.pattern(kind).stride(stride).summary(2);
      SparseTransformer block(options);
      const int64_t l = stride == 0 ? w : stride;
      const Pattern pattern = block->build_pattern(h, w);
      const at::Tensor mask = functional::dense_mask(pattern, n);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          const bool a1 = kind == "strided" ? std::abs(i - j) < l : i / l == j / l;
          const int64_t block_end = std::min((j / l + 1) * l, n);  // the last block is cut at n
          const bool a2 = kind == "strided" ? (i - j) % l == 0 : j >= block_end - 2;
          ASSERT_EQ(mask[0][i][j].item<bool>(), a1) << kind << " l=" << l << " A1 " << i << "," << j;
          ASSERT_EQ(mask[2][i][j].item<bool>(), a2) << kind << " l=" << l << " A2 " << i << "," << j;
        }
      }
      const at::Tensor m1 = mask[0].to(torch::kFloat), m2 = mask[2].to(torch::kFloat);
      const at::Tensor two_steps = kind == "strided" ? torch::matmul(m1, m2) : torch::matmul(m2, m1);
      EXPECT_TRUE((two_steps > 0).all().item<bool>()) << kind << " l=" << l;
    }
  }
}

// --- gmat ----------------------------------------------------------------------------------

// The memory slots are written from the tokens (another input writes another memory) and read
// by every token (each output pixel has a gradient on the slots' learned values).
TEST(Gmat, MemorySlotsAreWrittenFromTheTokensAndReadByEveryToken) {
  Gmat block(GmatOptions(16));
  block->eval();
  block->keep_written(true);
  const at::Tensor a = torch::randn({1, 16, 6, 11}), b = torch::randn({1, 16, 6, 11});
  block->forward(a);
  const at::Tensor written_a = block->written().clone();
  block->forward(b);
  ASSERT_EQ(written_a.sizes(), (std::vector<int64_t>{1, 4, 8, 4}));
  EXPECT_GT((written_a - block->written()).abs().max().item<float>(), 1e-4);
  const at::Tensor out = block->forward(a);
  for (const int64_t query : {int64_t{0}, int64_t{37}, int64_t{65}}) {
    const at::Tensor grad =
        torch::autograd::grad({out.flatten(2).select(2, query).sum()}, {block->memory_v}, {}, true)[0];
    EXPECT_GT(grad.abs().min().item<float>(), 0.0f) << "pixel " << query;
  }
}

// --- handcrafted ---------------------------------------------------------------------------

// No query, no key, no score: the block has neither projection, its weights are fixed Gaussians
// (largest at the head's centre, each row summing to 1) and its core is linear in the values.
TEST(Handcrafted, MixesValuesWithFixedGaussiansAndBuildsNoQueryOrKey) {
  Handcrafted block(HandcraftedOptions(16));
  EXPECT_FALSE(block->named_children().contains("to_q"));
  EXPECT_FALSE(block->named_children().contains("to_k"));
  const int64_t h = 8, w = 11, y = 4, x = 5;
  const at::Tensor weights = block->weights(h, w);
  EXPECT_LT((weights.sum(2) - 1).abs().max().item<float>(), 1e-6);
  const Pattern pattern = block->build_pattern(h, w);
  for (int64_t head = 0; head < 4; ++head) {
    const auto [cy, cx] = HandcraftedImpl::centre_of_head(head);
    const int64_t slot = weights[head][y * w + x].argmax().item<int64_t>();
    EXPECT_EQ(pattern.index[0][y * w + x][slot].item<int64_t>(), (y + cy) * w + x + cx) << "head " << head;
  }
  const at::Tensor v1 = torch::randn({2, 4, h * w, 4}), v2 = torch::randn_like(v1);
  const TokenGrid grid = raster_grid(h, w);
  const at::Tensor sum = block->attend_raster({}, {}, v1 + v2, grid);
  EXPECT_LT(relative_error(sum, block->attend_raster({}, {}, v1, grid) + block->attend_raster({}, {}, v2, grid)), 1e-6);
}

}  // namespace
}  // namespace attnseg
