// What makes the hashing sequence blocks real (../shared/ATTENTION_CATALOG.md, "Sequence
// blocks"): reformer's LSH buckets, sorted chunks and rounds, clustered attention's Hamming
// k-means and its improved top-k form, each against float64 loops (hashing_reference.h), on
// odd token counts, with their costs counted and their padding masked.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "attention/clustered.h"
#include "attention/hashing.h"
#include "attention/reformer.h"
#include "attention/registry.h"
#include "core/error.h"
#include "engine/counters.h"
#include "fixture.h"
#include "hashing_reference.h"
#include "sequence_reference.h"
#include "sequence_test.h"

namespace attnseg {
namespace {

using test::counted_macs;
using test::raster_grid;
using test::relative_error;

// Expects `configure` to throw naming the block and the key.
void expect_option_error(const std::string& yaml, const std::string& key) {
  try {
    configure_block(Config::from_string(yaml, "test").root(), 16);
    ADD_FAILURE() << "no error for " << yaml;
  } catch (const std::exception& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(key), std::string::npos) << m;
    EXPECT_TRUE(m.find("reformer") != std::string::npos || m.find("clustered") != std::string::npos)
        << m;
  }
}

// --- the hashing utilities ---------------------------------------------------------------

TEST(Hashing, AngularBucketIsTheArgmaxOfTheRotatedVectorAndItsNegation) {
  torch::manual_seed(20);
  const at::Tensor x = torch::randn({2, 3, 29, 5});
  const at::Tensor rotations = functional::random_rotations(5, 3, 6);
  ASSERT_EQ(rotations.sizes(), (std::vector<int64_t>{5, 3, 3}));
  const at::Tensor buckets = functional::angular_buckets(x, rotations);
  ASSERT_EQ(buckets.sizes(), (std::vector<int64_t>{2, 3, 3, 29}));
  const at::Tensor xd = x.to(torch::kDouble), rd = rotations.to(torch::kDouble);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 3; ++h) {
      for (int64_t r = 0; r < 3; ++r) {
        for (int64_t n = 0; n < 29; ++n) {
          int64_t best = -1;
          double best_value = -1e300;
          for (int64_t j = 0; j < 6; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < 5; ++d)
              dot += xd[b][h][n][d].item<double>() * rd[d][r][j % 3].item<double>();
            if ((j < 3 ? dot : -dot) > best_value) best_value = j < 3 ? dot : -dot, best = j;
          }
          EXPECT_EQ(buckets[b][h][r][n].item<int64_t>(), best) << b << h << r << n;
        }
      }
    }
  }
}

// Angular LSH: two vectors 10° apart share a bucket far more often than two 90° apart.
TEST(Hashing, CloseVectorsCollideMoreOftenThanFarOnes) {
  torch::manual_seed(21);
  const int64_t d = 16, draws = 400;
  const at::Tensor a = torch::randn({d});
  at::Tensor ortho = torch::randn({d});
  ortho = ortho - (ortho.dot(a) / a.dot(a)) * a;
  auto at_angle = [&](double degrees) {
    const double t = degrees * M_PI / 180;
    return a / a.norm() * std::cos(t) + ortho / ortho.norm() * std::sin(t);
  };
  const at::Tensor x = torch::stack({a / a.norm(), at_angle(10), at_angle(90)});  // [3, d]
  const at::Tensor buckets =
      functional::angular_buckets(x, functional::random_rotations(d, draws, 8));  // [draws, 3]
  const double near =
      (buckets.select(1, 0) == buckets.select(1, 1)).to(torch::kDouble).mean().item<double>();
  const double far =
      (buckets.select(1, 0) == buckets.select(1, 2)).to(torch::kDouble).mean().item<double>();
  std::printf("angular LSH, 8 buckets: collision rate at 10 degrees %.3f, at 90 degrees %.3f\n",
              near, far);
  EXPECT_GT(near, 0.6);
  EXPECT_LT(far, 0.3);
}

// Sorted by (bucket, position): the buckets never decrease along the order, positions increase
// inside a bucket, each bucket's run is as long as the histogram of the hashes says, and the
// inverse puts every token back.
TEST(Hashing, SortingByBucketGroupsEachBucketInPositionOrderAndInverts) {
  torch::manual_seed(22);
  const at::Tensor buckets = torch::randint(0, 6, {2, 3, 37}, torch::kLong);
  const auto [order, inverse] = functional::sort_by_bucket(buckets);
  const at::Tensor sorted = buckets.gather(-1, order);
  EXPECT_TRUE((sorted.narrow(-1, 1, 36) >= sorted.narrow(-1, 0, 36)).all().item<bool>());
  const at::Tensor same = sorted.narrow(-1, 1, 36) == sorted.narrow(-1, 0, 36);
  EXPECT_TRUE(((order.narrow(-1, 1, 36) > order.narrow(-1, 0, 36)) | ~same).all().item<bool>());
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 3; ++h) {
      EXPECT_TRUE(torch::equal(torch::bincount(sorted[b][h], {}, 6),
                               torch::bincount(buckets[b][h], {}, 6)));
    }
  }
  const at::Tensor x = torch::randn({2, 3, 37, 4});
  EXPECT_TRUE(
      torch::equal(functional::gather_tokens(functional::gather_tokens(x, order), inverse), x));
}

TEST(Hashing, LookOneBackPairsEachChunkWithThePreviousOneCyclically) {
  const at::Tensor chunks = torch::arange(12, torch::kLong).view({1, 4, 3});  // 4 chunks of 3
  const at::Tensor pairs = functional::look_one_back(chunks, 1);
  ASSERT_EQ(pairs.sizes(), (std::vector<int64_t>{1, 4, 6}));
  EXPECT_TRUE(torch::equal(pairs[0][0], torch::tensor({0, 1, 2, 9, 10, 11}, torch::kLong)));
  EXPECT_TRUE(torch::equal(pairs[0][2], torch::tensor({6, 7, 8, 3, 4, 5}, torch::kLong)));
}

TEST(Hashing, HyperplaneBitsSayWhetherTheProjectionExceedsTheOffset) {
  torch::manual_seed(23);
  const at::Tensor x = torch::randn({3, 11, 4}).to(torch::kDouble);
  const at::Tensor planes = functional::random_hyperplanes(7, 4, /*bias=*/true).to(torch::kDouble);
  const at::Tensor bits = functional::hyperplane_bits(x, planes);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t n = 0; n < 11; ++n) {
      for (int64_t b = 0; b < 7; ++b) {
        double s = 0;
        for (int64_t d = 0; d < 4; ++d)
          s += x[i][n][d].item<double>() * planes[b][d].item<double>();
        EXPECT_EQ(bits[i][n][b].item<double>(), s > planes[b][4].item<double>() ? 1.0 : 0.0);
      }
    }
  }
  EXPECT_TRUE(torch::equal(functional::random_hyperplanes(7, 4, /*bias=*/false).select(1, 4),
                           torch::zeros({7})));
}

TEST(Hashing, HammingKMeansMatchesLloydsAlgorithmCodeByCode) {
  torch::manual_seed(24);
  const at::Tensor codes = (torch::rand({2, 3, 53, 12}) > 0.5).to(torch::kFloat);
  for (const int64_t iterations : {1, 2, 10}) {
    EXPECT_TRUE(torch::equal(functional::hamming_kmeans(codes, 7, iterations),
                             test::hamming_kmeans_reference(codes, 7, iterations)))
        << iterations << " iterations";
  }
}

// Queries drawn around four directions far apart: hashing and k-means with four clusters put
// each group in one cluster of its own.
TEST(Hashing, QueriesAroundFourDirectionsLandInFourClusters) {
  torch::manual_seed(25);
  const int64_t n = 61, d = 8;
  const at::Tensor centres = torch::randn({4, d}) * 4;
  const at::Tensor group = torch::arange(n, torch::kLong).remainder(4);
  const at::Tensor q = centres.index_select(0, group) + 0.05 * torch::randn({n, d});
  const at::Tensor codes = functional::hyperplane_bits(q.view({1, 1, n, d}),
                                                       functional::random_hyperplanes(48, d, true));
  const at::Tensor cluster = functional::hamming_kmeans(codes, 4, 10).view({n});
  for (int64_t g = 0; g < 4; ++g) {
    const at::Tensor of_group = cluster.masked_select(group == g);
    EXPECT_TRUE((of_group == of_group[0]).all().item<bool>()) << "group " << g << " split";
    for (int64_t other = g + 1; other < 4; ++other) {
      EXPECT_NE(of_group[0].item<int64_t>(),
                cluster.masked_select(group == other)[0].item<int64_t>());
    }
  }
}

// --- reformer -------------------------------------------------------------------------------

// One bucket and one round: the chunks hold the tokens in position order; when two chunks (or
// one) cover the sequence every query sees every key: full attention with keys = unit queries,
// a token's own key left out. 45 tokens in one chunk, and 45 padded to 46 in chunks of 23.
TEST(Reformer, WithOneBucketAndOneRoundItIsFullSharedQKAttentionWithoutSelf) {
  torch::manual_seed(30);
  const at::Tensor qk = torch::randn({2, 3, 45, 5}), v = torch::randn({2, 3, 45, 6});
  const at::Tensor unit = qk / qk.norm(2, -1, true);
  const at::Tensor ref =
      test::softmax_attention_reference(qk, unit, v, [](int64_t i, int64_t j) { return i != j; });
  const at::Tensor one_chunk =
      functional::lsh_attention(qk, v, torch::zeros({2, 3, 1, 45}, torch::kLong), 45, {}, false);
  EXPECT_LT(relative_error(one_chunk, ref), 1e-5);
  const at::Tensor qk_pad = at::constant_pad_nd(qk, {0, 0, 0, 1}),
                   v_pad = at::constant_pad_nd(v, {0, 0, 0, 1});
  const at::Tensor valid = torch::arange(46) < 45;
  at::Tensor buckets = torch::zeros({2, 3, 1, 46}, torch::kLong);
  buckets.select(3, 45).fill_(1);  // the padded token after every real one
  const at::Tensor two_chunks =
      functional::lsh_attention(qk_pad, v_pad, buckets, 23, valid, false).narrow(2, 0, 45);
  EXPECT_LT(relative_error(two_chunks, ref), 1e-5);
}

// A token alone in its chunk pair with nothing else real attends to itself (trax's −1e5, not
// the −1e9 of a masked key): one real token among padding gets its own value.
TEST(Reformer, ATokenAttendsToItselfOnlyWhenNothingElseIsAvailable) {
  torch::manual_seed(31);
  const at::Tensor qk = torch::randn({1, 1, 4, 3}), v = torch::randn({1, 1, 4, 2});
  const at::Tensor valid = torch::tensor({true, false, false, false});
  const at::Tensor buckets = torch::tensor({0, 1, 1, 1}, torch::kLong).view({1, 1, 1, 4});
  const at::Tensor out = functional::lsh_attention(qk, v, buckets, 2, valid, false);
  EXPECT_TRUE(torch::allclose(out[0][0][0], v[0][0][0], 1e-6, 1e-6));
}

// Several rounds, random buckets, padding and the causal mask against the float64 loops.
TEST(Reformer, RoundsCombinedByLogsumexpMatchTheLoopReference) {
  torch::manual_seed(32);
  const at::Tensor qk = torch::randn({2, 2, 36, 5}), v = torch::randn({2, 2, 36, 4});
  const at::Tensor buckets = torch::randint(0, 4, {2, 2, 3, 36}, torch::kLong);
  std::vector<bool> valid(36, true);
  for (int64_t i = 33; i < 36; ++i) valid[i] = false;
  const at::Tensor key_valid = torch::arange(36) < 33;
  for (const bool causal : {false, true}) {
    const at::Tensor out = functional::lsh_attention(qk, v, buckets, 6, key_valid, causal);
    const at::Tensor ref = test::lsh_attention_reference(qk, v, buckets, 6, valid, causal);
    EXPECT_LT(relative_error(out.narrow(2, 0, 33), ref.narrow(2, 0, 33)), 1e-5)
        << "causal " << causal;
  }
}

// Against lucidrains/reformer-pytorch's LSHAttention (fixture recorded by
// tools/reference/reformer.py in float64, its rotations fixed and stored): the same buckets
// from the same rotations, and the same output (its self score −5e4 against trax's −1e5 here
// changes nothing where a query has other keys). 6 head-rows of 48 tokens, chunks of 8,
// 6 buckets, 3 rounds.
TEST(Reformer, MatchesTheReferenceImplementation) {
  const test::Fixture f = test::load_fixture("reformer");
  const at::Tensor qk = f["qk"].unsqueeze(0), v = f["v"].unsqueeze(0);  // [1, 6, 48, 5]
  const at::Tensor buckets = functional::angular_buckets(qk, f["rotations"]);
  EXPECT_TRUE(torch::equal(buckets, f["buckets"].to(torch::kLong).unsqueeze(0)));
  const at::Tensor out =
      functional::lsh_attention(qk.to(torch::kFloat), v.to(torch::kFloat), buckets, 8, {}, false);
  const double error = relative_error(out.squeeze(0), f["out"]);
  std::printf("reformer against reformer-pytorch's LSHAttention: relative error %.2e\n", error);
  EXPECT_LT(error, 1e-5);
}

// The block's own hashing: in every round the sorted sequence's chunks hold tokens of
// non-decreasing buckets, each bucket's run as long as the histogram of the hashes, and the
// padded tokens in a bucket after every real one.
TEST(Reformer, BlockBucketsFollowTheHashesAndPaddingSortsLast) {
  ReformerOptions options(16);
  options.bucket_size(8).n_hashes(3).host().heads(2);
  torch::manual_seed(33);
  Reformer block(options);
  block->eval();
  const TokenGrid grid = padded_grid(raster_grid(7, 9), 1, torch::kCPU);  // 63 tokens + 1
  const at::Tensor qk = at::constant_pad_nd(torch::randn({2, 2, 63, 8}), {0, 0, 0, 1});
  const at::Tensor buckets = block->hash(qk, grid);
  const int64_t n_buckets = block->buckets_for(64);
  EXPECT_EQ(n_buckets, 8);
  ASSERT_EQ(buckets.sizes(), (std::vector<int64_t>{2, 2, 3, 64}));
  EXPECT_TRUE((buckets.select(3, 63) == n_buckets).all().item<bool>());
  const at::Tensor real = buckets.narrow(3, 0, 63);
  EXPECT_TRUE(torch::equal(
      real, functional::angular_buckets(qk.narrow(2, 0, 63), block->evaluation_rotations(64))));
  EXPECT_TRUE(((real >= 0) & (real < n_buckets)).all().item<bool>());
  const at::Tensor sorted = buckets.gather(-1, functional::sort_by_bucket(buckets).first);
  const at::Tensor chunks = sorted.view({2, 2, 3, 8, 8});
  EXPECT_TRUE((chunks.narrow(-1, 1, 7) >= chunks.narrow(-1, 0, 7)).all().item<bool>());
  EXPECT_TRUE(torch::equal(torch::bincount(sorted.flatten(), {}, n_buckets + 1),
                           torch::bincount(buckets.flatten(), {}, n_buckets + 1)));
  // Two rotations drawn from the same seed agree; buckets differ between rounds.
  EXPECT_TRUE(torch::equal(block->evaluation_rotations(64), block->evaluation_rotations(64)));
  EXPECT_FALSE(torch::equal(real.select(2, 0), real.select(2, 1)));
}

// Padding: whatever the padded tokens hold, the real tokens' outputs do not change.
TEST(Reformer, PaddedTokensNeverReachRealOutputs) {
  ReformerOptions options(16);
  options.bucket_size(8).n_hashes(2).host().heads(2);
  torch::manual_seed(34);
  Reformer block(options);
  block->eval();
  const TokenGrid grid = padded_grid(raster_grid(7, 9), 1, torch::kCPU);
  const at::Tensor q = torch::randn({1, 2, 64, 8}), v = torch::randn({1, 2, 64, 8});
  at::Tensor q2 = q.clone(), v2 = v.clone();
  q2.narrow(2, 63, 1).copy_(
      q.narrow(2, 5, 1));  // a copy of a real token: it would hash and score like it
  v2.narrow(2, 63, 1).fill_(1e4);
  torch::NoGradGuard no_grad;
  const at::Tensor a = block->attend(q, q, v, grid), b = block->attend(q2, q2, v2, grid);
  EXPECT_TRUE(torch::allclose(a.narrow(2, 0, 63), b.narrow(2, 0, 63), 1e-6, 1e-6));
}

// Cost: at 4× the tokens the products grow about 4× (the chunks stay bucket_size long; the
// hashing grows with the bucket count until max_buckets), where attention over all pairs pays 16×.
TEST(Reformer, ProductsGrowAboutLinearlyWithTheTokenCount) {
  ReformerOptions options(64);
  options.host().heads(1);
  torch::manual_seed(35);
  Reformer block(options);
  block->eval();
  auto macs = [&](int64_t h, int64_t w) {
    const at::Tensor q = torch::randn({1, 1, h * w, 64});
    return counted_macs([&] { block->attend(q, q, q, raster_grid(h, w)); });
  };
  const double ratio = static_cast<double>(macs(16, 96)) / static_cast<double>(macs(8, 48));
  std::printf("reformer products at 4x the tokens (384 -> 1536): %.2fx\n", ratio);
  EXPECT_GT(ratio, 3.9);
  EXPECT_LT(ratio, 5.0);
  // Past max_buckets chunks the hashing stops growing with the bucket count: exactly 4×.
  const double capped = static_cast<double>(macs(64, 128)) / static_cast<double>(macs(32, 64));
  std::printf("reformer products at 4x the tokens (2048 -> 8192): %.2fx\n", capped);
  EXPECT_DOUBLE_EQ(capped, 4.0);
}

TEST(Reformer, EvaluationIsDeterministicAndTrainingRedrawsOnlyWhenConfigured) {
  torch::manual_seed(36);
  Reformer block(ReformerOptions(16).bucket_size(4));
  const at::Tensor x = torch::randn({1, 16, 5, 7});
  torch::NoGradGuard no_grad;
  block->eval();
  EXPECT_TRUE(torch::equal(block->forward(x), block->forward(x)));
  block->train();
  EXPECT_FALSE(torch::equal(block->forward(x), block->forward(x)));
  Reformer fixed(ReformerOptions(16).bucket_size(4).redraw(false));
  fixed->train();
  EXPECT_TRUE(torch::equal(fixed->forward(x), fixed->forward(x)));
}

// Shared QK: the host's key projection is not a parameter, so the gradient harness and the
// optimiser see only what the output depends on.
TEST(Reformer, KeyProjectionIsNotAParameter) {
  Reformer block(ReformerOptions(16));
  for (const auto& item : block->named_parameters())
    EXPECT_EQ(item.key().find("to_k"), std::string::npos) << item.key();
  EXPECT_TRUE(block->named_parameters().contains("to_q.weight"));
}

// Converted to double (as a model moved to another type), the queries the host projects in
// float under autocast are projected in double, and the block agrees with the float one.
TEST(Reformer, ConvertedToDoubleItComputesInDoubleAndAgreesWithFloat) {
  torch::manual_seed(38);
  Reformer block(ReformerOptions(16).bucket_size(8));
  block->eval();
  const at::Tensor x = torch::randn({1, 16, 5, 7});
  torch::NoGradGuard no_grad;
  const at::Tensor y = block->forward(x);
  block->to(torch::kDouble);
  const at::Tensor y64 = block->forward(x.to(torch::kDouble));
  EXPECT_EQ(y64.scalar_type(), torch::kDouble);
  EXPECT_LT(relative_error(y64 - x, y - x), 1e-5);
}

// A model converted to another type and back hashes as before: the rotation seed (2^31 - 3
// here, which neither bfloat16 nor float holds exactly) stays an exact int64 buffer.
TEST(Reformer, ConvertingToBf16AndBackKeepsTheRotationSeedAndSoTheRotations) {
  Reformer block(ReformerOptions(16));
  at::Tensor seed = block->named_buffers()["rotation_seed"];
  {
    torch::NoGradGuard no_grad;
    seed.fill_(int64_t{2147483645});
  }
  const at::Tensor before = block->evaluation_rotations(64);
  block->to(torch::kBFloat16);
  block->to(torch::kCPU, torch::kFloat);
  seed = block->named_buffers()["rotation_seed"];
  EXPECT_EQ(seed.scalar_type(), torch::kLong);
  EXPECT_EQ(seed.item<int64_t>(), 2147483645);
  EXPECT_TRUE(torch::equal(block->evaluation_rotations(64), before));
  EXPECT_EQ(block->named_parameters()["to_q.weight"].scalar_type(), torch::kFloat);
}

// Converted to double, the core computes in double (not in float, as under autocast) and
// agrees with the float block.
TEST(Clustered, ConvertedToDoubleItComputesInDoubleAndAgreesWithFloat) {
  torch::manual_seed(39);
  Clustered block(ClusteredOptions(16).clusters(5).improved(true).topk(4));
  block->eval();
  const at::Tensor x = torch::randn({1, 16, 5, 7});
  torch::NoGradGuard no_grad;
  const at::Tensor y = block->forward(x);
  block->to(torch::kDouble);
  const at::Tensor y64 = block->forward(x.to(torch::kDouble));
  EXPECT_EQ(y64.scalar_type(), torch::kDouble);
  EXPECT_LT(relative_error(y64 - x, y - x), 1e-5);
}

// At the trained 8×48 the buckets are one per chunk (12); on the demo's 60×80 map (4800
// tokens) 150, so buckets stay chunk-sized; the block runs there.
TEST(Reformer, RunsOnTheDemoFrameMapWithABucketPerChunkUpToTheCap) {
  torch::manual_seed(37);
  Reformer block(ReformerOptions(32).bucket_size(32));
  block->eval();
  EXPECT_EQ(block->buckets_for(384), 12);
  EXPECT_EQ(block->buckets_for(1888), 60);  // 59 chunks, rounded up to even
  EXPECT_EQ(block->buckets_for(4800), 64);  // 150 chunks, capped at max_buckets
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({1, 32, 60, 80});
  const at::Tensor y = block->forward(x);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
}

TEST(Reformer, BadOptionsNameTheBlockAndTheKey) {
  expect_option_error("{type: reformer, reformer: {n_buckets: 3}}", "n_buckets");
  expect_option_error("{type: reformer, reformer: {bucket_size: 0}}", "bucket_size");
  expect_option_error("{type: reformer, reformer: {n_hashes: 0}}", "n_hashes");
}

// --- clustered ------------------------------------------------------------------------------

// With at least as many clusters as tokens, each query is its own centroid: both forms are
// full softmax attention.
TEST(Clustered, WithAClusterPerTokenItIsFullAttention) {
  torch::manual_seed(40);
  const at::Tensor q = torch::randn({2, 3, 35, 5}), k = torch::randn({2, 3, 35, 5}),
                   v = torch::randn({2, 3, 35, 6});
  const at::Tensor ref = test::softmax_attention_reference(q, k, v);
  for (const bool improved : {false, true}) {
    ClusteredOptions options(15);
    options.clusters(40).improved(improved).topk(4).host().heads(3);
    Clustered block(options);
    block->eval();
    EXPECT_LT(relative_error(block->attend(q, k, v, raster_grid(5, 7)), ref), 1e-5)
        << "improved " << improved;
  }
}

TEST(Clustered, CentroidAttentionMatchesTheLoopReference) {
  torch::manual_seed(41);
  const at::Tensor q = torch::randn({2, 3, 31, 5}), k = torch::randn({2, 3, 31, 5}),
                   v = torch::randn({2, 3, 31, 6});
  const at::Tensor cluster = torch::randint(0, 6, {2, 3, 31}, torch::kLong);
  EXPECT_LT(relative_error(functional::clustered_attention(q, k, v, cluster, 6),
                           test::clustered_reference(q, k, v, cluster, 6, 0)),
            1e-5);
}

// Members of one cluster share one output row in the plain form.
TEST(Clustered, MembersOfAClusterShareTheirOutput) {
  torch::manual_seed(42);
  const at::Tensor q = torch::randn({1, 1, 23, 4}), k = torch::randn({1, 1, 23, 4}),
                   v = torch::randn({1, 1, 23, 3});
  const at::Tensor cluster = torch::randint(0, 3, {1, 1, 23}, torch::kLong);
  const at::Tensor out = functional::clustered_attention(q, k, v, cluster, 3)[0][0];
  for (int64_t i = 0; i < 23; ++i) {
    const int64_t first = cluster[0][0].eq(cluster[0][0][i]).nonzero()[0][0].item<int64_t>();
    EXPECT_TRUE(torch::equal(out[i], out[first])) << i;
  }
}

// The improved form against the float64 formula, and its weights read off directly (values =
// the identity, so output row i is query i's weights): on the cluster's top-k keys the exact
// softmax of the query's own scores over those keys times the centroid's mass on them, on the
// other keys the centroid's weights; each row sums to 1.
TEST(Clustered, ImprovedFormTopKWeightsAreExactSoftmaxScaledByTheClusterMass) {
  torch::manual_seed(43);
  const int64_t n = 29, d = 5, c = 4, topk = 6;
  const at::Tensor q = torch::randn({1, 2, n, d}), k = torch::randn({1, 2, n, d}),
                   v = torch::randn({1, 2, n, 3});
  const at::Tensor cluster = torch::randint(0, c, {1, 2, n}, torch::kLong);
  EXPECT_LT(relative_error(functional::improved_clustered_attention(q, k, v, cluster, c, topk),
                           test::clustered_reference(q, k, v, cluster, c, topk)),
            1e-5);

  const at::Tensor eye = torch::eye(n).expand({1, 2, n, n});
  const at::Tensor weights =
      functional::improved_clustered_attention(q, k, eye, cluster, c, topk).to(torch::kDouble);
  EXPECT_LT((weights.sum(-1) - 1).abs().max().item<double>(), 1e-5);
  const at::Tensor qd = q.to(torch::kDouble), kd = k.to(torch::kDouble);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t j = 0; j < c; ++j) {
      const at::Tensor members = cluster[0][h].eq(j).nonzero().flatten();
      if (members.numel() == 0) continue;
      const at::Tensor centroid = qd[0][h].index_select(0, members).mean(0);
      const at::Tensor centroid_w = torch::softmax(kd[0][h].mv(centroid) / std::sqrt(d), 0);
      const at::Tensor top = std::get<1>(centroid_w.topk(topk));
      const double mass = centroid_w.index_select(0, top).sum().item<double>();
      const at::Tensor outside = torch::ones({n}, torch::kBool).index_fill(0, top, false);
      for (int64_t m = 0; m < members.numel(); ++m) {
        const int64_t i = members[m].item<int64_t>();
        const at::Tensor own =
            torch::softmax(kd[0][h].index_select(0, top).mv(qd[0][h][i]) / std::sqrt(d), 0);
        EXPECT_LT((weights[0][h][i].index_select(0, top) - mass * own).abs().max().item<double>(),
                  1e-6);
        EXPECT_LT((weights[0][h][i].masked_select(outside) - centroid_w.masked_select(outside))
                      .abs()
                      .max()
                      .item<double>(),
                  1e-6);
      }
    }
  }
}

// fast-transformers' ClusteredAttention and ImprovedClusteredAttention (its C++ hashing, Hamming
// k-means, aggregation and top-k products, compiled by tools/reference/clustered.py) in float32
// on the same q, k, v and hyperplanes, its k-means started where ours starts
// (tests/fixtures/clustered.json): the same bits, clusters and outputs, both forms.
TEST(Clustered, MatchesTheReferenceClusteredAndImprovedClusteredAttention) {
  const test::Fixture f = test::load_fixture("clustered");
  const at::Tensor q = f["q"].to(torch::kFloat), k = f["k"].to(torch::kFloat),
                   v = f["v"].to(torch::kFloat);
  const at::Tensor cluster = functional::hamming_kmeans(
      functional::hyperplane_bits(q, f["planes"].to(torch::kFloat)), 5, 10);
  EXPECT_LT(test::max_relative_error(functional::clustered_attention(q, k, v, cluster, 5),
                                     f["y"].to(torch::kFloat)),
            1e-5);
  EXPECT_LT(test::max_relative_error(functional::improved_clustered_attention(q, k, v, cluster, 5, 7),
                                     f["y_improved"].to(torch::kFloat)),
            1e-5);
}

// Cost O(N·C): for a fixed number of clusters (and top k), 4× the tokens cost exactly 4× the
// products, hashing and k-means included.
TEST(Clustered, ProductsGrowLinearlyWithTheTokenCountForFixedClusters) {
  for (const bool improved : {false, true}) {
    ClusteredOptions options(64);
    options.improved(improved).host().heads(1);
    torch::manual_seed(44);
    Clustered block(options);
    block->eval();
    auto macs = [&](int64_t h, int64_t w) {
      const at::Tensor q = torch::randn({1, 1, h * w, 64});
      return counted_macs([&] { block->attend(q, q, q, raster_grid(h, w)); });
    };
    EXPECT_EQ(macs(16, 96), 4 * macs(8, 48)) << "improved " << improved;
  }
}

TEST(Clustered, EvaluationIsDeterministicAndTrainingRedrawsOnlyWhenConfigured) {
  torch::manual_seed(45);
  Clustered block(ClusteredOptions(16).clusters(5));
  const at::Tensor x = torch::randn({1, 16, 7, 9});
  torch::NoGradGuard no_grad;
  block->eval();
  EXPECT_TRUE(torch::equal(block->forward(x), block->forward(x)));
  block->train();
  EXPECT_FALSE(torch::equal(block->forward(x), block->forward(x)));
  Clustered fixed(ClusteredOptions(16).clusters(5).redraw(false));
  fixed->train();
  EXPECT_TRUE(torch::equal(fixed->forward(x), fixed->forward(x)));
}

TEST(Clustered, RunsOnTheDemoFrameMapInBothForms) {
  for (const bool improved : {false, true}) {
    torch::manual_seed(46);
    Clustered block(ClusteredOptions(32).improved(improved));
    block->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor x = torch::randn({1, 32, 60, 80});
    const at::Tensor y = block->forward(x);
    EXPECT_EQ(y.sizes(), x.sizes());
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << "improved " << improved;
  }
}

TEST(Clustered, BadOptionsNameTheBlockAndTheKey) {
  expect_option_error("{type: clustered, clustered: {clusters: 0}}", "clusters");
  expect_option_error("{type: clustered, clustered: {bits: 65}}", "bits");
  expect_option_error("{type: clustered, clustered: {topk: 0}}", "topk");
  expect_option_error("{type: clustered, clustered: {iterations: 0}}", "iterations");
}

// --- both -----------------------------------------------------------------------------------

// Why both blocks have the host project their queries and keys in float under any autocast
// (TokenHostImpl::float_queries_keys): hashing is discontinuous, so rounding the projections to
// bf16 alone would move tokens to other buckets and queries to other clusters (before the host
// did so, the attention branch was 4-7% off fp32 on 16×32 maps for these two blocks, where
// linear and linformer stay within 0.3%).
TEST(HashingBlocks, Bf16RoundedQueriesWouldMoveBucketsSoTheHostProjectsThemInFloat) {
  torch::manual_seed(47);
  const at::Tensor q = torch::randn({2, 4, 512, 16}),
                   rounded = q.to(torch::kBFloat16).to(torch::kFloat);
  const at::Tensor rotations = functional::random_rotations(16, 2, 16);
  const double moved =
      (functional::angular_buckets(q, rotations) != functional::angular_buckets(rounded, rotations))
          .to(torch::kDouble)
          .mean()
          .item<double>();
  const at::Tensor planes = functional::random_hyperplanes(32, 16, true);
  const double flipped =
      (functional::hyperplane_bits(q, planes) != functional::hyperplane_bits(rounded, planes))
          .to(torch::kDouble)
          .mean()
          .item<double>();
  std::printf("bf16-rounded queries: %.4f of buckets moved, %.4f of hash bits flipped\n", moved,
              flipped);
  EXPECT_GT(moved, 0);
  EXPECT_GT(flipped, 0);
  EXPECT_TRUE(Reformer(ReformerOptions(16))->float_queries_keys());
  EXPECT_TRUE(Clustered(ClusteredOptions(16))->float_queries_keys());
}

// The multiply-adds each block reports are the ones its forward executes, on a 7×9 map (63
// tokens: reformer pads to its chunk of 8, clustered runs k-means with fewer clusters than
// tokens).
TEST(TokenHost, ExecutedMultiplyAddsEqualTheAnalyticCountOfTheHashingBlocks) {
  ReformerOptions reformer(16);
  reformer.bucket_size(8);
  ReformerOptions causal = reformer;
  causal.causal(true).n_buckets(4);
  ClusteredOptions clustered(16), improved(16);
  clustered.clusters(6);
  improved.clusters(6).improved(true).topk(10);
  std::vector<std::pair<std::string, AttentionBlock>> blocks{
      {"reformer", Reformer(reformer).ptr()},
      {"reformer causal", Reformer(causal).ptr()},
      {"reformer default", build_block("reformer", 16)},
      {"clustered", Clustered(clustered).ptr()},
      {"clustered improved", Clustered(improved).ptr()},
      {"clustered default", build_block("clustered", 16)}};
  for (auto& [name, block] : blocks) {
    block->eval();
    const at::Tensor x = torch::randn({2, 16, 7, 9});
    EXPECT_EQ(counted_macs([&] { block->forward(x); }), block->macs({2, 16, 7, 9})) << name;
  }
}

}  // namespace
}  // namespace attnseg
