// What makes routing and sinkhorn real (../shared/ATTENTION_CATALOG.md, "Sequence blocks"), beyond
// the registry-wide harness (test_blocks.cpp): the online k-means and its state, routing's windows
// and commitment loss, the Sinkhorn sorting matrix and the block pairing, padding, cost and the
// demo's map size.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <sstream>

#include "attention/kmeans.h"
#include "attention/registry.h"
#include "attention/routing.h"
#include "attention/sinkhorn.h"
#include "core/error.h"
#include "engine/counters.h"
#include "fixture.h"
#include "routing_reference.h"
#include "sequence_reference.h"
#include "sequence_test.h"

namespace attnseg {
namespace {

using test::counted_macs;
using test::raster_grid;
using test::relative_error;

// The message of the error that configuring `yaml` raises ("" when none).
std::string configure_error(const std::string& yaml) {
  try {
    configure_block(Config::from_string(yaml, "test").root(), 16);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// --- online k-means -------------------------------------------------------------------------

TEST(OnlineKMeans, TopWPerClusterTakesTheWMostSimilarTokensInTokenOrder) {
  torch::manual_seed(20);
  const at::Tensor similarity = torch::randn({2, 3, 13, 4});
  const at::Tensor index = functional::top_w_per_cluster(similarity, 5);
  ASSERT_EQ(index.sizes(), (std::vector<int64_t>{2, 3, 4, 5}));
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 3; ++h) {
      for (int64_t c = 0; c < 4; ++c) {
        const at::Tensor column = similarity[b][h].select(1, c);
        const double fifth = std::get<0>(column.sort(0, /*descending=*/true))[4].item<double>();
        const at::Tensor expected =
            torch::nonzero(column >= fifth).flatten();  // in increasing order
        EXPECT_TRUE(torch::equal(index[b][h][c], expected)) << b << "," << h << "," << c;
      }
    }
  }
}

TEST(OnlineKMeans, ClusterMeansAreNormalisedSumsOverTheBatchAndKeepEmptyClusters) {
  torch::manual_seed(21);
  const at::Tensor x = functional::unit_normalise(torch::randn({2, 1, 6, 3}));
  const at::Tensor centroids = functional::unit_normalise(torch::randn({1, 3, 3}));
  // Cluster 2 gets nothing.
  const at::Tensor assignment =
      torch::tensor({0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0}, torch::kLong).view({2, 1, 6});
  const at::Tensor means = functional::cluster_means(x, assignment, centroids);
  for (int64_t c = 0; c < 2; ++c) {
    at::Tensor sum = torch::zeros({3}, torch::kDouble);
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t n = 0; n < 6; ++n) {
        if (assignment[b][0][n].item<int64_t>() == c) sum += x[b][0][n].to(torch::kDouble);
      }
    }
    EXPECT_LT(relative_error(means[0][c], sum / sum.norm()), 1e-6) << c;
  }
  EXPECT_TRUE(torch::equal(means[0][2], centroids[0][2]));
}

TEST(OnlineKMeans, UpdateIsTheNormalisedMovingAverageOfTheAssignedMeans) {
  torch::manual_seed(22);
  OnlineKMeans kmeans(OnlineKMeansOptions(2, 3, 4).decay(0.9).init_iters(0));
  const at::Tensor before = kmeans->centroids().clone();
  const at::Tensor x = functional::unit_normalise(torch::randn({2, 2, 9, 4}));
  const at::Tensor nearest = std::get<1>(kmeans->assign(x));
  EXPECT_TRUE(torch::equal(nearest, functional::centroid_similarity(x, before).argmax(-1)));
  kmeans->update(x, nearest);
  const at::Tensor means = functional::cluster_means(x, nearest, before);
  const at::Tensor expected = functional::unit_normalise(before * 0.9 + means * 0.1);
  EXPECT_LT(relative_error(kmeans->centroids(), expected), 1e-6);
  EXPECT_LT((kmeans->centroids().norm(2, -1) - 1).abs().max().item<double>(), 1e-6);
}

// --- routing --------------------------------------------------------------------------------

RoutingOptions small_routing() {
  RoutingOptions options(16);
  options.clusters(4).host().heads(2).map_size({5, 7});
  return options;
}

TEST(Routing, CentroidsMoveInTrainingModeAndNotInEvalMode) {
  torch::manual_seed(23);
  Routing block(small_routing());
  const at::Tensor x = torch::randn({2, 16, 5, 7});
  const at::Tensor initial = block->kmeans->centroids().clone();
  block->eval();
  for (int i = 0; i < 3; ++i) block->forward(x);
  EXPECT_TRUE(torch::equal(block->kmeans->centroids(), initial)) << "moved in eval mode";
  block->train();
  block->forward(x);
  const at::Tensor after_one = block->kmeans->centroids().clone();
  EXPECT_FALSE(torch::equal(after_one, initial)) << "did not move in training mode";
  block->forward(x);
  EXPECT_FALSE(torch::equal(block->kmeans->centroids(), after_one))
      << "moved only on the first training pass";
  block->eval();
  const at::Tensor trained = block->kmeans->centroids().clone();
  block->forward(torch::randn({2, 16, 5, 7}));
  EXPECT_TRUE(torch::equal(block->kmeans->centroids(), trained))
      << "moved in eval mode after training";
}

TEST(Routing, CentroidsAreSavedAndRestoredWithTheCheckpoint) {
  torch::manual_seed(24);
  Routing a(small_routing()), b(small_routing());
  a->forward(torch::randn({1, 16, 5, 7}));  // training mode: the centroids move
  ASSERT_FALSE(torch::equal(a->kmeans->centroids(), b->kmeans->centroids()));
  std::stringstream stream;
  torch::serialize::OutputArchive out;
  a->save(out);
  out.save_to(stream);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  b->load(in);
  EXPECT_TRUE(torch::equal(a->kmeans->centroids(), b->kmeans->centroids()));
}

TEST(Routing, CommitmentLossIsDefinedInTrainingWithGradientToTheQueryProjectionAndUndefinedInEval) {
  torch::manual_seed(25);
  Routing block(small_routing());
  EXPECT_FALSE(block->aux_loss().defined()) << "defined before any forward";
  block->forward(torch::randn({2, 16, 5, 7}));
  const at::Tensor loss = block->aux_loss();
  ASSERT_TRUE(loss.defined());
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_GT(loss.item<double>(), 0);
  // At most weight · 4 / d: two unit vectors differ by at most 2 in norm, 4/d per element on
  // average.
  EXPECT_LE(loss.item<double>(), 1e-4 * 4.0 / 8.0);
  loss.backward();
  const at::Tensor grad = block->named_parameters()["to_q.weight"].grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_GT(grad.abs().sum().item<double>(), 0);
  block->eval();
  block->forward(torch::randn({2, 16, 5, 7}));
  EXPECT_FALSE(block->aux_loss().defined()) << "defined after an eval-mode forward";
}

// One centroid whose window is every token: every query attends to every key.
TEST(Routing, OneClusterWhoseWindowCoversAllTokensIsFullAttention) {
  RoutingOptions options(16);
  options.clusters(1).local_heads(0).host().heads(4).map_size({7, 9});
  Routing block(options);
  block->eval();
  ASSERT_EQ(block->window_for(63), 63);
  torch::manual_seed(26);
  const auto q = torch::randn({2, 4, 63, 4}), k = torch::randn({2, 4, 63, 4}),
             v = torch::randn({2, 4, 63, 4});
  EXPECT_LT(relative_error(block->attend(q, k, v, raster_grid(7, 9)),
                           test::softmax_attention_reference(q, k, v)),
            1e-5);
}

// Windows of 5 of the 23 tokens for 3 centroids: 15 slots, so tokens in several windows (their
// outputs averaged) and tokens in none (zero) both occur, and the core still equals the loops.
TEST(Routing, OverlappingWindowsAverageAndUncoveredTokensGetZeroAsTheLoopReference) {
  torch::manual_seed(27);
  const auto q = torch::randn({1, 2, 23, 4}), k = torch::randn({1, 2, 23, 4}),
             v = torch::randn({1, 2, 23, 3});
  const at::Tensor centroids = functional::unit_normalise(torch::randn({2, 3, 4}));
  const at::Tensor out = functional::routing_attention(q, k, v, centroids, 5);
  const at::Tensor windows = functional::top_w_per_cluster(
      functional::centroid_similarity(functional::unit_normalise(q), centroids), 5);
  const at::Tensor count =
      torch::zeros({1, 2, 23}).scatter_add_(2, windows.flatten(2), torch::ones({1, 2, 15}));
  ASSERT_TRUE((count == 0).any().item<bool>());
  ASSERT_TRUE((count > 1).any().item<bool>());
  EXPECT_EQ(out.masked_select((count == 0).unsqueeze(-1)).abs().max().item<double>(), 0.0);
  EXPECT_LT(relative_error(out, test::routing_reference(q, k, v, centroids, 5)), 1e-5);
}

// lucidrains' KmeansAttention (shared_qk=False) in float64 on the same q, k, v and centroids
// (tests/fixtures/routing.json, tools/reference/routing.py): the same windows and outputs; its
// mean over windows divides by count + 1e-5, a relative difference of at most 1e-5. After a
// training-mode forward, its commitment loss and its new cluster means (before its moving
// average) are ours.
TEST(Routing, MatchesTheReferenceKmeansAttention) {
  const test::Fixture f = test::load_fixture("routing");
  const at::Tensor out = functional::routing_attention(f["q"], f["k"], f["v"], f["means"], 9);
  EXPECT_LT(test::max_relative_error(out, f["y"]), 1.1e-5);
  OnlineKMeans kmeans(OnlineKMeansOptions(3, 4, 5).init_iters(0));
  kmeans->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    kmeans->centroids().copy_(f["means"]);
  }
  const at::Tensor x =
      at::cat({functional::unit_normalise(f["q"]), functional::unit_normalise(f["k"])}, 2);
  const at::Tensor nearest = std::get<1>(kmeans->assign(x));
  EXPECT_LT(test::max_relative_error((kmeans->commitment(x, nearest) * 1e-4).reshape({1}),
                                     f["commitment"]),
            1e-12);
  EXPECT_LT(test::max_relative_error(functional::cluster_means(x, nearest, f["means"]),
                                     f["cluster_means"]),
            1e-12);
}

// The window is set by the trained map (map_size, default 8×48: ceil(384 / 16) = 24, k·w = T
// there) and stays at that size on every other map, cut to the map's tokens.
TEST(Routing, WindowIsSetByTheTrainedMapAndStaysFixedAtEveryOtherSize) {
  Routing trained(RoutingOptions(16));  // 16 clusters, trained on 8×48
  EXPECT_EQ(trained->window_for(8 * 48), 24);
  EXPECT_EQ(trained->window_for(60 * 80), 24);
  EXPECT_EQ(trained->window_for(7 * 9), 24);
  EXPECT_EQ(trained->window_for(10), 10);
  RoutingOptions demo(16);
  demo.host().map_size({60, 80});
  EXPECT_EQ(Routing(demo)->window_for(8 * 48), 300);
  RoutingOptions options(16);
  options.window(20);
  Routing fixed(options);
  EXPECT_EQ(fixed->window_for(8 * 48), 20);
  EXPECT_EQ(fixed->window_for(60 * 80), 20);
  EXPECT_EQ(fixed->window_for(7), 7);
}

// Routing heads only: 2·N·k·d to route the N queries and N keys, 2·k·w²·d within the windows,
// counted as executed. With the local heads as well (the default layout), 4× the tokens give at
// most 4× the routing, the same windows and about 4× the local windows (fewer keys cut off at the
// borders of the larger map): under 5×, where full attention takes 16×.
TEST(Routing, ProductsGrowLinearlyInTokensWithTheWindowFixed) {
  const int64_t heads = 4, d = 8, clusters = 16;
  auto macs = [&](Routing& block, int64_t height, int64_t width) {
    block->eval();
    const auto q = torch::randn({1, heads, height * width, d});
    const int64_t executed = counted_macs([&] { block->attend(q, q, q, raster_grid(height, width)); });
    EXPECT_EQ(executed, block->core_macs_on(1, height, width)) << height << "x" << width;
    return executed;
  };
  RoutingOptions options(heads * d);
  options.clusters(clusters).local_heads(0).host().heads(heads);
  Routing routing_only(options);
  for (const int64_t side : {16, 32}) {
    const int64_t n = side * side, w = 24;
    EXPECT_EQ(macs(routing_only, side, side), heads * (2 * n * clusters * d + 2 * clusters * w * w * d)) << n;
  }
  options.local_heads(-1);
  Routing layout(options);
  const double ratio = static_cast<double>(macs(layout, 64, 64)) / static_cast<double>(macs(layout, 32, 32));
  std::printf("routing, 2 local + 2 routing heads: products at 64x64 / at 32x32 = %.3f (full attention: 16)\n",
              ratio);
  EXPECT_LT(ratio, 5.0);
  EXPECT_GT(ratio, 3.0);
}

// The layout on a 9×13 map, 3 heads: head 0 is local attention over the 5×5 window cut to the map,
// heads 1 and 2 are the routing core on the block's centroids, each against its float64 reference.
TEST(Routing, LocalHeadsAttendToTheirWindowAndTheOthersAreTheRoutingCore) {
  torch::manual_seed(31);
  RoutingOptions options(24);
  options.clusters(4).local_heads(1).local_window(5).host().heads(3).map_size({9, 13});
  Routing block(options);
  block->eval();
  const int64_t h = 9, w = 13, n = h * w;
  const auto q = torch::randn({2, 3, n, 8}), k = torch::randn({2, 3, n, 8}), v = torch::randn({2, 3, n, 8});
  const at::Tensor out = block->attend(q, k, v, raster_grid(h, w));
  const at::Tensor local = test::softmax_attention_reference(
      q.narrow(1, 0, 1), k.narrow(1, 0, 1), v.narrow(1, 0, 1), [&](int64_t i, int64_t j) {
        return std::abs(i / w - j / w) <= 2 && std::abs(i % w - j % w) <= 2;
      });
  EXPECT_LT(relative_error(out.narrow(1, 0, 1), local), 1e-5);
  ASSERT_EQ(block->window_for(n), 30);  // ceil(117 / 4)
  const at::Tensor routed = test::routing_reference(q.narrow(1, 1, 2), k.narrow(1, 1, 2), v.narrow(1, 1, 2),
                                                    block->kmeans->centroids(), 30);
  EXPECT_LT(relative_error(out.narrow(1, 1, 2), routed), 1e-5);
}

// On a 30×40 map (1,200 tokens) the 16 windows of 24 hold 384 slots: most tokens are in no
// routing window, so the routing heads give them nothing; the local heads still do, and such a
// token's output depends on exactly the keys of its 7×7 window (cut to the map at a border).
TEST(Routing, ATokenNoRoutingWindowTakesReadsExactlyItsLocalWindow) {
  torch::manual_seed(32);
  Routing block(RoutingOptions(16));  // 4 heads: 2 local, 2 routing
  block->eval();
  const int64_t h = 30, w = 40, n = h * w;
  const auto q = torch::randn({1, 4, n, 4}), v = torch::randn({1, 4, n, 4});
  const auto k = torch::randn({1, 4, n, 4}).requires_grad_(true);
  const at::Tensor out = block->attend(q, k, v, raster_grid(h, w));
  const at::Tensor unrouted = (out.narrow(1, 2, 2).abs().sum({0, 1, 3}) == 0);  // [N]
  ASSERT_GT(unrouted.sum().item<int64_t>(), n / 2) << "most tokens should be in no routing window";
  EXPECT_TRUE((out.narrow(1, 0, 2).abs().sum({0, 1, 3}) > 0).all().item<bool>())
      << "a token got nothing from the local heads";
  // The first unrouted token of row 1 (a border row: its window loses the row above the map's top).
  int64_t token = -1;
  for (int64_t i = w; i < 2 * w && token < 0; ++i) {
    if (unrouted[i].item<bool>()) token = i;
  }
  ASSERT_GE(token, 0);
  out.select(2, token).sum().backward();
  const at::Tensor read = k.grad().abs().sum({0, 1, 3}) > 0;
  for (int64_t j = 0; j < n; ++j) {
    const bool in_window = std::abs(j / w - token / w) <= 3 && std::abs(j % w - token % w) <= 3;
    EXPECT_EQ(read[j].item<bool>(), in_window) << "token " << token << ", key " << j;
  }
}

TEST(Routing, RunsOnTheDemoFrameFeatureMapInBothModes) {
  torch::manual_seed(28);
  RoutingOptions options(16);
  options.host().heads(2);  // trained on the default 8×48 map
  Routing block(options);
  const at::Tensor x = torch::randn({1, 16, 60, 80});
  const at::Tensor trained = block->forward(x);
  EXPECT_TRUE(torch::isfinite(trained).all().item<bool>());
  EXPECT_TRUE(block->aux_loss().defined());
  block->eval();
  const at::Tensor y = block->forward(x);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  EXPECT_FALSE(torch::allclose(y, x)) << "the block did nothing at 60×80";
}

TEST(Routing, BadOptionsNameTheBlockAndTheKey) {
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"{type: routing, routing: {clusters: 0}}", "clusters"},
           {"{type: routing, routing: {window: -1}}", "window"},
           {"{type: routing, routing: {local_heads: 4}}", "local_heads"},
           {"{type: routing, routing: {local_heads: -2}}", "local_heads"},
           {"{type: routing, routing: {local_window: 4}}", "local_window"},
           {"{type: routing, routing: {decay: 1.0}}", "decay"},
           {"{type: routing, routing: {commitment_weight: -1.0}}", "commitment_weight"}}) {
    const std::string message = configure_error(yaml);
    EXPECT_NE(message.find("routing"), std::string::npos) << yaml << ": " << message;
    EXPECT_NE(message.find(key), std::string::npos) << yaml << ": " << message;
  }
}

// --- sinkhorn -------------------------------------------------------------------------------

SinkhornOptions small_sinkhorn(int64_t bucket) {
  SinkhornOptions options(16);
  options.bucket_size(bucket).host().heads(2).map_size({7, 9});
  return options;
}

// 7 blocks of 9 tokens (a 7×9 map). The last Sinkhorn step normalises the columns, so they sum to
// 1 to rounding after any number of iterations; the rows' total deviation from 1 never grows from
// one iteration count to the next (Sinkhorn's marginal error is non-increasing) and goes to 0.
// The sorting network's ReLU zeroes about half the logits (log(1e-6) after the +ε), a range that
// makes the convergence slow: the row errors at the default 5 iterations are printed, not bounded.
TEST(Sinkhorn, SortingMatrixRowsAndColumnsSumToOneOnAnOddBlockCount) {
  torch::manual_seed(29);
  const auto q = torch::randn({2, 2, 63, 8}), k = torch::randn({2, 2, 63, 8});
  const std::vector<int64_t> counts{1, 5, 20, 100, 2000};
  std::vector<double> row_errors, row_max;
  for (const int64_t iters : counts) {
    SinkhornOptions options = small_sinkhorn(9);
    options.sinkhorn_iters(iters);
    torch::manual_seed(30);
    Sinkhorn block(options);
    const at::Tensor r = block->sorting_matrix(q, k, raster_grid(7, 9)).to(torch::kDouble);
    ASSERT_EQ(r.sizes(), (std::vector<int64_t>{2, 2, 7, 7}));
    EXPECT_TRUE((r >= 0).all().item<bool>());
    EXPECT_LT((r.sum(-2) - 1).abs().max().item<double>(), 1e-5) << "columns after " << iters;
    row_errors.push_back((r.sum(-1) - 1).abs().sum().item<double>());
    row_max.push_back((r.sum(-1) - 1).abs().max().item<double>());
  }
  for (size_t i = 0; i < counts.size(); ++i) {
    std::printf(
        "sinkhorn after %4ld iterations: rows' largest deviation from 1 %.2e (total %.2e)\n",
        static_cast<long>(counts[i]), row_max[i], row_errors[i]);
    if (i > 0) {
      EXPECT_LE(row_errors[i], row_errors[i - 1] + 1e-6) << counts[i];
    }
  }
  EXPECT_LT(row_max.back(), 1e-3);
}

TEST(Sinkhorn, SortingMatrixEqualsTheFloat64Loops) {
  torch::manual_seed(31);
  const auto q = torch::randn({1, 2, 45, 4}), k = torch::randn({1, 2, 45, 4});
  const at::Tensor w = torch::randn({2, 8, 5});
  std::vector<bool> real(45, true);
  real[44] = false;
  const at::Tensor valid = torch::arange(45) < 44;
  EXPECT_LT(relative_error(functional::sinkhorn_sorting_matrix(q, k, w, valid, 9, 5, 0.75, {}),
                           test::sinkhorn_matrix_reference(q, k, w, real, 9, 5, 0.75)),
            1e-5);
}

// The block's core through attend() (eval mode: no noise), with padding, against the loops.
TEST(Sinkhorn, BlockOutputEqualsTheFloat64ReferenceOfTheSameFormula) {
  torch::manual_seed(32);
  Sinkhorn block(small_sinkhorn(8));  // 63 tokens → 8 blocks, 1 padding token
  block->eval();
  {
    torch::NoGradGuard no_grad;
    block->weight.uniform_(0.1, 1.0);  // positive logits: each row's largest entry stands apart
  }
  const TokenGrid grid = padded_grid(raster_grid(7, 9), 1, torch::kCPU);
  const auto q = torch::randn({2, 2, 64, 8}) + 1, k = torch::randn({2, 2, 64, 8}) + 1,
             v = torch::randn({2, 2, 64, 8});
  std::vector<bool> real(64, true);
  real[63] = false;
  const at::Tensor out = block->attend(q, k, v, grid);
  EXPECT_LT(
      relative_error(
          out.narrow(2, 0, 63),
          test::sinkhorn_reference(q, k, v, block->weight, real, 8, 5, 0.75).narrow(2, 0, 63)),
      1e-5);
}

// lucidrains' SinkhornAttention with its simple sort net in float64, Gumbel noise zero
// (tests/fixtures/sinkhorn.json, tools/reference/sinkhorn.py): the same sorting matrix on 5 blocks,
// and, since that path mixes every block by R, the same output as soft=true (its values are its
// keys there, as it uses the keys' mixture for the values).
TEST(Sinkhorn, SoftFormMatchesTheReferenceSinkhornAttention) {
  const test::Fixture f = test::load_fixture("sinkhorn");
  const at::Tensor r =
      functional::sinkhorn_sorting_matrix(f["q"], f["k"], f["weight"], {}, 7, 5, 0.75, {});
  EXPECT_LT(test::max_relative_error(r, f["r"]), 1e-12);
  const at::Tensor out = functional::sinkhorn_attention(f["q"], f["k"], f["k"], f["weight"], {}, 7,
                                                        5, 0.75, {}, /*soft=*/true);
  EXPECT_LT(test::max_relative_error(out, f["y"]), 1e-12);
}

// soft=true: every block mixed by its row of R (padded tokens as zeros), against the loops.
TEST(Sinkhorn, SoftPermutationOutputEqualsTheFloat64ReferenceOfTheMixture) {
  torch::manual_seed(37);
  SinkhornOptions options = small_sinkhorn(8);
  options.soft(true);
  Sinkhorn block(options);
  block->eval();
  const TokenGrid grid = padded_grid(raster_grid(7, 9), 1, torch::kCPU);
  const auto q = torch::randn({2, 2, 64, 8}), k = torch::randn({2, 2, 64, 8}),
             v = torch::randn({2, 2, 64, 8});
  std::vector<bool> real(64, true);
  real[63] = false;
  const at::Tensor out = block->attend(q, k, v, grid);
  const at::Tensor ref =
      test::sinkhorn_reference(q, k, v, block->weight, real, 8, 5, 0.75, /*soft=*/true);
  EXPECT_LT(relative_error(out.narrow(2, 0, 63), ref.narrow(2, 0, 63)), 1e-5);
  // Not the paired form: the mixture is what the output holds.
  const at::Tensor paired = test::sinkhorn_reference(q, k, v, block->weight, real, 8, 5, 0.75);
  EXPECT_GT(relative_error(out.narrow(2, 0, 63), paired.narrow(2, 0, 63)), 1e-2);
}

// 61 real tokens in 8 blocks of 8: 3 padding tokens. Whatever the padded q, k, v hold, the real
// outputs stay (they enter no block sum and are masked as keys in the own and the sorted block).
TEST(Sinkhorn, PaddedTokensValuesNeverChangeTheRealOutputs) {
  for (const bool soft : {false, true}) {
    torch::manual_seed(33);
    SinkhornOptions options = small_sinkhorn(8);
    options.soft(soft);
    Sinkhorn block(options);
    block->eval();
    const TokenGrid grid =
        padded_grid(TokenGrid{1, 61, TokenOrder::raster, {}, 0, {}}, 3, torch::kCPU);
    at::Tensor q = torch::randn({2, 2, 64, 8}), k = torch::randn({2, 2, 64, 8}),
               v = torch::randn({2, 2, 64, 8});
    const at::Tensor before = block->attend(q, k, v, grid).narrow(2, 0, 61);
    for (at::Tensor* t : {&q, &k, &v}) t->narrow(2, 61, 3).normal_(0.0, 10.0);
    const at::Tensor after = block->attend(q, k, v, grid).narrow(2, 0, 61);
    EXPECT_TRUE(torch::allclose(before, after, 1e-6, 1e-6))
        << "soft " << soft << ": " << (before - after).abs().max().item<double>();
  }
}

// A query block's outputs depend on the values of its own block and of its one partner block
// (the largest entry of its row of the sorting matrix), on no other block's. Values, not keys:
// the keys also feed the block sums of the sorting network, through which every block counts.
TEST(Sinkhorn, EachQueryBlockReadsOnlyItsOwnBlockAndItsPartnerBlock) {
  torch::manual_seed(34);
  Sinkhorn block(small_sinkhorn(9));
  block->eval();
  const auto q = torch::randn({1, 2, 63, 8}), k = torch::randn({1, 2, 63, 8});
  const TokenGrid grid = raster_grid(7, 9);
  const at::Tensor partner = block->sorting_matrix(q, k, grid).argmax(-1);  // [1, 2, 7]
  int64_t paired_elsewhere = 0;
  for (int64_t i = 0; i < 7; ++i) {
    const at::Tensor v = torch::randn({1, 2, 63, 8}, torch::requires_grad());
    block->attend(q, k, v, grid).narrow(2, i * 9, 9).select(1, 0).sum().backward();
    const at::Tensor reach =
        v.grad()[0][0].abs().sum(-1).view({7, 9}).sum(-1) > 0;  // per value block
    const int64_t p = partner[0][0][i].item<int64_t>();
    paired_elsewhere += p != i;
    for (int64_t j = 0; j < 7; ++j) {
      EXPECT_EQ(reach[j].item<bool>(), j == i || j == p)
          << "query block " << i << ", value block " << j;
    }
  }
  EXPECT_GT(paired_elsewhere, 0) << "every block paired with itself: the test shows nothing";
}

// Products: B·h·(2d·nb² + 4·N·b·d), linear in N for a fixed bucket b up to the sorting network's
// nb² logits; 4× the tokens give under 5× the products (full attention: 16×).
TEST(Sinkhorn, ProductsGrowLinearlyInTokensForAFixedBucketSize) {
  SinkhornOptions options(16);
  options.bucket_size(32).host().heads(2);
  Sinkhorn block(options);
  block->eval();
  auto macs = [&](int64_t n) {
    const auto q = torch::randn({1, 2, n, 8});
    return counted_macs([&] { block->attend(q, q, q, raster_grid(1, n)); });
  };
  for (const int64_t n : {256, 1024}) {
    const int64_t nb = n / 32;
    EXPECT_EQ(macs(n), 2 * (2 * 8 * nb * nb + 4 * n * 32 * 8)) << n;
  }
  const double ratio = static_cast<double>(macs(1024)) / static_cast<double>(macs(256));
  std::printf("sinkhorn, bucket 32: products at 1024 tokens / at 256 = %.3f (full attention: 16)\n",
              ratio);
  EXPECT_LT(ratio, 5.0);
}

TEST(Sinkhorn, GumbelNoiseOnlyInTrainingModeAndOnlyWhenConfigured) {
  torch::manual_seed(35);
  Sinkhorn block(small_sinkhorn(9));
  const at::Tensor x = torch::randn({1, 16, 7, 9});
  torch::NoGradGuard no_grad;
  block->eval();
  const at::Tensor eval = block->forward(x);
  EXPECT_TRUE(torch::equal(block->forward(x), eval));
  block->train();
  EXPECT_FALSE(torch::equal(block->forward(x), block->forward(x))) << "no noise in training mode";
  block->options.gumbel(false);
  EXPECT_TRUE(torch::equal(block->forward(x), eval)) << "noise with gumbel=false";
}

// The sorting network has one column per block position of the trained map; at another map it
// is resampled to that map's block count, and at the trained map used as it is.
TEST(Sinkhorn, SortingWeightIsResampledToTheBlockCountOfAnotherMap) {
  Sinkhorn block(SinkhornOptions(16));  // 8×48 → 12 blocks of 32
  ASSERT_EQ(block->weight.sizes(), (std::vector<int64_t>{4, 8, 12}));
  EXPECT_TRUE(torch::equal(block->weight_for(12), block->weight));
  const at::Tensor resampled = block->weight_for(150);  // 60×80
  EXPECT_EQ(resampled.sizes(), (std::vector<int64_t>{4, 8, 150}));
  // Linear resampling keeps the values within the range of the trained columns.
  EXPECT_LE(resampled.max().item<double>(), block->weight.max().item<double>() + 1e-6);
  EXPECT_GE(resampled.min().item<double>(), block->weight.min().item<double>() - 1e-6);
}

// The demo's 640×480 frames make [1, C, 60, 80] maps: 4800 tokens, 150 blocks of the default 32,
// and with blocks of 36 the host pads 12 tokens.
TEST(Sinkhorn, RunsOnTheDemoFrameFeatureMapWithAndWithoutPadding) {
  torch::manual_seed(36);
  const at::Tensor x = torch::randn({1, 16, 60, 80});
  for (const int64_t bucket : {32, 36}) {
    SinkhornOptions options(16);
    options.bucket_size(bucket).host().heads(2);
    Sinkhorn block(options);
    block->eval();
    const at::Tensor y = block->forward(x);
    EXPECT_EQ(y.sizes(), x.sizes());
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << bucket;
    EXPECT_FALSE(torch::allclose(y, x)) << bucket;
  }
}

TEST(Sinkhorn, BadOptionsNameTheBlockAndTheKey) {
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"{type: sinkhorn, sinkhorn: {bucket_size: 0}}", "bucket_size"},
           {"{type: sinkhorn, sinkhorn: {sinkhorn_iters: 0}}", "sinkhorn_iters"},
           {"{type: sinkhorn, sinkhorn: {temperature: 0.0}}", "temperature"}}) {
    const std::string message = configure_error(yaml);
    EXPECT_NE(message.find("sinkhorn"), std::string::npos) << yaml << ": " << message;
    EXPECT_NE(message.find(key), std::string::npos) << yaml << ": " << message;
  }
}

// --- both: the reported count is the executed one ---------------------------------------------

// On a 7×9 map: 63 tokens, padded to 64 for sinkhorn's blocks of 32; routing's 2 local heads on
// their 7×7 windows and 2 routing heads with windows of 24 (set by the 8×48 trained map).
TEST(TokenHost, ExecutedMultiplyAddsEqualTheAnalyticCountOfTheRoutingAndSinkhornBlocks) {
  SinkhornOptions soft(16);
  soft.soft(true);
  for (const auto& [name, block] : std::vector<std::pair<std::string, AttentionBlock>>{
           {"routing", build_block("routing", 16)},
           {"sinkhorn", build_block("sinkhorn", 16)},
           {"sinkhorn soft", Sinkhorn(soft).ptr()}}) {
    block->eval();
    const at::Tensor x = torch::randn({2, 16, 7, 9});
    EXPECT_EQ(counted_macs([&] { block->forward(x); }), block->macs({2, 16, 7, 9})) << name;
  }
}

}  // namespace
}  // namespace attnseg
