// What makes compressive and sac real, beyond the registry-wide harness (test_blocks.cpp):
// compressive's segment-wise memories, their lengths, their carry-over between video frames and
// its attention-reconstruction loss; sac's predicted edges, exactly k per token, learned by the
// predictor. Both: padded keys never attended, linear counted cost, the analytic count, the demo's
// 60×80 map (../shared/ATTENTION_CATALOG.md, "Sequence blocks").
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "attention/compressive.h"
#include "attention/registry.h"
#include "attention/sac.h"
#include "compressive_reference.h"
#include "core/error.h"
#include "engine/counters.h"
#include "fixture.h"
#include "sequence_test.h"

namespace attnseg {
namespace {

using test::counted_macs;
using test::relative_error;

// q, k, v of `n` tokens of a map of `real` tokens (1 × real), padded to n.
struct PaddedInput {
  at::Tensor q, k, v;
  TokenGrid grid;
};
PaddedInput padded_input(int64_t b, int64_t heads, int64_t real, int64_t n, int64_t d) {
  PaddedInput in{torch::randn({b, heads, n, d}),
                 torch::randn({b, heads, n, d}),
                 torch::randn({b, heads, n, d}),
                 {}};
  in.grid = padded_grid(TokenGrid{1, real, TokenOrder::raster, {}, 0, {}}, n - real, torch::kCPU);
  return in;
}

// New random values at the padded tokens only.
at::Tensor repad(const at::Tensor& x, int64_t real) {
  at::Tensor y = x.clone();
  y.narrow(2, real, x.size(2) - real).normal_(0.0, 5.0);
  return y;
}

std::string error_of(const std::string& yaml) {
  try {
    configure_block(Config::from_string(yaml, "test").root(), 16);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

CompressiveOptions small_compressive() {
  CompressiveOptions options(16);
  options.segment(8).mem_len(12).cmem_len(5).compression(3);
  return options;
}

// --- compressive ----------------------------------------------------------------------

// 63 tokens (7×9) in segments of 8: segment s sees min(8s, 12) memory rows; the first eviction
// (after segment 1: 16 − 12 = 4 rows) makes ⌈4/3⌉ = 2 slots, the next (8 rows) 3 more, and the
// compressed memory then stays at its 5 slots.
TEST(Compressive, MemoryAndCompressedMemoryLengthsAreTheConfiguredOnes) {
  torch::manual_seed(0);
  Compressive block(small_compressive());
  block->eval();
  block->forward(torch::randn({1, 16, 7, 9}));
  const std::vector<std::pair<int64_t, int64_t>> expected{{0, 0},  {8, 0},  {12, 2}, {12, 5},
                                                          {12, 5}, {12, 5}, {12, 5}, {12, 5}};
  ASSERT_EQ(block->last_memory_use().size(), expected.size());
  for (size_t s = 0; s < expected.size(); ++s) {
    EXPECT_EQ(block->last_memory_use()[s].memory, expected[s].first) << "segment " << s;
    EXPECT_EQ(block->last_memory_use()[s].compressed, expected[s].second) << "segment " << s;
  }
  // What a frame leaves for the next in temporal mode: the last 12 real tokens, 5 slots.
  block->set_temporal(true);
  block->forward(torch::randn({1, 16, 7, 9}));
  EXPECT_EQ(block->memory().k.sizes(), (std::vector<int64_t>{1, 4, 12, 4}));
  EXPECT_EQ(block->memory().ck.sizes(), (std::vector<int64_t>{1, 4, 5, 4}));
  block->forward(torch::randn({1, 16, 7, 9}));
  EXPECT_EQ(block->last_memory_use().front().memory, 12);
  EXPECT_EQ(block->last_memory_use().front().compressed, 5);
}

// The block's core, its own compression weights, on 63 real tokens padded to 64, against the
// float64 loop reference of segment-wise attention with memories.
TEST(Compressive, OutputEqualsTheSegmentwiseFloat64Reference) {
  torch::manual_seed(1);
  Compressive block(small_compressive());
  block->eval();
  const PaddedInput in = padded_input(2, 4, 63, 64, 4);
  const at::Tensor out = block->attend(in.q, in.k, in.v, in.grid);
  const at::Tensor ref =
      test::compressive_reference(in.q, in.k, in.v, 63, 8, 12, 5, block->k_weight, block->k_bias,
                                  block->v_weight, block->v_bias);
  const double error = relative_error(out, ref);
  std::printf("compressive against the float64 reference: relative error %.2e\n", error);
  EXPECT_LT(error, 1e-5);
}

// lucidrains' SelfAttention run segment by segment with its memories (fixture recorded by
// tools/reference/compressive.py, float64; 5 segments of 3, memory 4, 3 compressed slots, rate 2,
// so evictions are padded). The reference is causal inside a segment and this block is not: the
// last query of each segment sees its whole segment in both, and there they agree.
TEST(Compressive, MatchesTheReferenceImplementationAtEachSegmentsLastQuery) {
  const test::Fixture f = test::load_fixture("compressive");
  const at::Tensor s = f["settings"].to(torch::kLong);
  const functional::CompressiveSettings settings{s[0].item<int64_t>(), s[1].item<int64_t>(),
                                                 s[2].item<int64_t>(), s[3].item<int64_t>()};
  functional::CompressiveMemory memory;
  std::vector<functional::SegmentMemory> used;
  const at::Tensor out = functional::compressive_attention(
      f["q"], f["k"], f["v"], {}, memory, settings, f["k_weight"], f["k_bias"], f["v_weight"],
      f["v_bias"], false, &used, nullptr);
  ASSERT_EQ(used.size(), 5u);
  EXPECT_EQ(used.back().compressed, 3) << "the fixture never reached a full compressed memory";
  const at::Tensor last = torch::arange(settings.segment - 1, out.size(2), settings.segment);
  const double error =
      test::max_relative_error(out.index_select(2, last), f["y"].index_select(2, last));
  std::printf("compressive against lucidrains' SelfAttention at the segments' last queries: %.2e\n",
              error);
  EXPECT_LT(error, 1e-10);
}

TEST(Compressive, PaddedKeysAreNeverAttendedNorRemembered) {
  torch::manual_seed(2);
  Compressive block(small_compressive());
  block->eval();
  block->set_temporal(true);
  const PaddedInput in = padded_input(1, 4, 59, 64, 4);
  const at::Tensor a = block->attend(in.q, in.k, in.v, in.grid);
  const functional::CompressiveMemory left = block->memory();
  block->reset_temporal();
  const at::Tensor b = block->attend(repad(in.q, 59), repad(in.k, 59), repad(in.v, 59), in.grid);
  EXPECT_TRUE(torch::allclose(a.narrow(2, 0, 59), b.narrow(2, 0, 59), 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(left.k, block->memory().k)) << "padded keys entered the memory";
  EXPECT_TRUE(torch::equal(left.ck, block->memory().ck))
      << "padded keys entered the compressed memory";
}

// Video: with temporal mode on, the second frame's output depends on the first frame; off, or
// after reset_temporal(), it does not.
TEST(Compressive, TemporalModeCarriesTheFirstFramesMemoryIntoTheSecond) {
  torch::manual_seed(3);
  Compressive block(small_compressive());
  block->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor first = torch::randn({1, 16, 5, 7}), second = torch::randn({1, 16, 5, 7});
  const at::Tensor perturbed = first + 0.5 * torch::randn_like(first);
  auto second_after = [&](const at::Tensor& frame) {
    block->reset_temporal();
    block->forward(frame);
    return block->forward(second);
  };
  block->set_temporal(true);
  const at::Tensor a = second_after(first), b = second_after(perturbed);
  EXPECT_GT((a - b).abs().max().item<double>(), 1e-3) << "the first frame did not reach the second";
  block->reset_temporal();
  const at::Tensor fresh = block->forward(second);
  block->set_temporal(false);
  const at::Tensor c = second_after(first), d = second_after(perturbed);
  EXPECT_TRUE(torch::equal(c, d)) << "memory carried over with temporal mode off";
  EXPECT_TRUE(torch::allclose(fresh, c, 1e-6, 1e-6)) << "reset_temporal() left something behind";
}

TEST(Compressive, TemporalMemoryRefusesAFrameOfAnotherBatchSize) {
  Compressive block(small_compressive());
  block->eval();
  block->set_temporal(true);
  block->forward(torch::randn({2, 16, 5, 7}));
  try {
    block->forward(torch::randn({1, 16, 5, 7}));
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("reset_temporal"), std::string::npos) << e.what();
  }
}

// Training mode: the loss is defined, positive, and its gradient reaches the compression
// network and nothing of the main network (queries and old memory are detached). Evaluation
// mode: no loss.
TEST(Compressive, ReconstructionLossTrainsOnlyTheCompressionNetwork) {
  torch::manual_seed(4);
  Compressive block(small_compressive());
  block->train();
  block->forward(torch::randn({2, 16, 7, 9}));
  const at::Tensor loss = block->aux_loss();
  ASSERT_TRUE(loss.defined());
  EXPECT_GT(loss.item<double>(), 0);
  loss.backward();
  for (const auto& item : block->named_parameters()) {
    const bool compression = item.key().rfind("compress_", 0) == 0;
    const bool reached =
        item.value().grad().defined() && item.value().grad().abs().sum().item<double>() > 0;
    EXPECT_EQ(reached, compression) << item.key();
  }
  block->eval();
  block->forward(torch::randn({2, 16, 7, 9}));
  EXPECT_FALSE(block->aux_loss().defined());
}

// For fixed segment and memory lengths the cost is linear in N: 4× the tokens, 4× the products
// up to the first segments' shorter memories, where full attention pays 16×.
TEST(Compressive, ProductsGrowLinearlyWithTheTokenCount) {
  Compressive block(CompressiveOptions(16));  // segment 24, memory 24, 24 compressed slots
  block->eval();
  auto macs = [&](int64_t n) {
    const PaddedInput in = padded_input(1, 4, n, n, 4);
    return counted_macs([&] { block->attend(in.q, in.k, in.v, in.grid); });
  };
  const double ratio = static_cast<double>(macs(4 * 1536)) / static_cast<double>(macs(1536));
  std::printf("compressive counted products, 4x the tokens: %.3fx\n", ratio);
  EXPECT_GT(ratio, 3.9);
  EXPECT_LT(ratio, 4.2);
}

// --- sac ------------------------------------------------------------------------------

TEST(Sac, EachTokenAttendsToExactlyKDistinctPartners) {
  torch::manual_seed(5);
  const int64_t n = 63, k = 6;
  const auto q = torch::randn({1, 2, n + 1, 4}), kk = torch::randn({1, 2, n + 1, 4}),
             v = torch::randn({1, 2, n + 1, 4});
  const TokenGrid grid =
      padded_grid(TokenGrid{7, 9, TokenOrder::raster, {}, 0, {}}, 1, torch::kCPU);
  const auto [edges, scores] = functional::sac_edges(torch::randn({1, 2, n + 1, 8}), grid.key_valid,
                                                     torch::randn({2, 8, 4}), /*chunk=*/16, k);
  ASSERT_EQ(edges.sizes(), (std::vector<int64_t>{1, 2, n + 1, k}));
  const at::Tensor out = functional::sac_attention(q, kk, v, edges, scores);
  for (int64_t i = 0; i < n; i += 7) {
    const auto row = edges[0][1][i];
    std::set<int64_t> partners;
    for (int64_t t = 0; t < k; ++t) partners.insert(row[t].item<int64_t>());
    EXPECT_EQ(partners.size(), static_cast<size_t>(k)) << "token " << i;
    EXPECT_EQ(partners.count(n), 0u) << "token " << i << " chose the padded token";
    // Each partner's value moves the output of token i; the values of all other tokens at
    // once (the padded one included) do not.
    auto moved = [&](const at::Tensor& v2) {
      return (functional::sac_attention(q, kk, v2, edges, scores)[0][1][i] - out[0][1][i])
          .abs()
          .max()
          .item<double>();
    };
    at::Tensor strangers = v.clone();
    for (int64_t j = 0; j <= n; ++j) {
      if (partners.count(j)) {
        at::Tensor v2 = v.clone();
        v2[0][1][j].add_(10.0);
        EXPECT_GT(moved(v2), 1e-6) << "partner " << j << " of token " << i;
      } else {
        strangers[0][1][j].add_(10.0);
      }
    }
    EXPECT_EQ(moved(strangers), 0.0) << "a non-partner reached token " << i;
  }
}

// The predictor's edges come from the input: another input, other edges.
TEST(Sac, ChosenEdgesChangeWithTheInput) {
  torch::manual_seed(6);
  Sac block(SacOptions(16).k(4).chunk(8));
  block->eval();
  block->keep_edges(true);
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({1, 16, 7, 9});
  block->forward(x);
  const at::Tensor first = block->last_edges().clone();
  block->forward(x);
  EXPECT_TRUE(torch::equal(first, block->last_edges())) << "edges not a function of the input";
  block->forward(x + torch::randn_like(x));
  const double changed = (first != block->last_edges()).to(torch::kDouble).mean().item<double>();
  std::printf("sac: fraction of edges changed by a new input %.3f\n", changed);
  EXPECT_GT(changed, 0.2);
}

// The predictor picks, among a token's candidates, the k of highest score: the top-k of the
// kept scores against every candidate's score recomputed here from the hash buckets by loops.
TEST(Sac, KeptEdgesAreTheTopScoringCandidatesOfTheHashedChunks) {
  torch::manual_seed(7);
  const int64_t n = 40, chunk = 8, k = 3, r = 4;
  const at::Tensor e = torch::randn({1, 1, n, r}), rotations = torch::randn({1, r, 2});
  const auto [edges, scores] = functional::sac_edges(e, {}, rotations, chunk, k);
  // Buckets and the sorted order, by loops.
  std::vector<std::pair<int64_t, int64_t>> keyed;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> h;
    for (int64_t c = 0; c < 2; ++c) {
      double acc = 0;
      for (int64_t j = 0; j < r; ++j)
        acc += e[0][0][i][j].item<double>() * rotations[0][j][c].item<double>();
      h.push_back(acc);
    }
    h.push_back(-h[0]);
    h.push_back(-h[1]);
    keyed.emplace_back(std::max_element(h.begin(), h.end()) - h.begin(), i);
  }
  std::sort(keyed.begin(), keyed.end());
  for (int64_t p = 0; p < n; ++p) {
    const int64_t i = keyed[p].second, own = p / chunk, chunks = n / chunk;
    std::vector<std::pair<double, int64_t>> candidates;
    for (const int64_t c : {own, (own + chunks - 1) % chunks}) {
      for (int64_t m = c * chunk; m < (c + 1) * chunk; ++m) {
        const int64_t j = keyed[m].second;
        double s = 0;
        for (int64_t t = 0; t < r; ++t)
          s += e[0][0][i][t].item<double>() * e[0][0][j][t].item<double>();
        candidates.emplace_back(s / std::sqrt(static_cast<double>(r)), j);
      }
    }
    std::sort(candidates.rbegin(), candidates.rend());
    std::set<int64_t> expected, kept;
    for (int64_t t = 0; t < k; ++t) {
      expected.insert(candidates[t].second);
      kept.insert(edges[0][0][i][t].item<int64_t>());
    }
    EXPECT_EQ(kept, expected) << "token " << i;
  }
}

// The kept edges' scores enter the attention logits, so the task loss trains the predictor.
TEST(Sac, GradientReachesTheEdgePredictor) {
  torch::manual_seed(8);
  Sac block(SacOptions(16).k(4).chunk(8));
  const at::Tensor y = block->forward(torch::randn({2, 16, 7, 9}));
  (y * torch::randn_like(y)).sum().backward();
  ASSERT_TRUE(block->edge_weight.grad().defined());
  EXPECT_GT(block->edge_weight.grad().abs().sum().item<double>(), 0);
}

TEST(Sac, PaddedKeysAreNeverAttended) {
  torch::manual_seed(9);
  Sac block(SacOptions(16).k(4).chunk(16));
  block->eval();
  block->keep_edges(true);
  const PaddedInput in = padded_input(2, 4, 53, 64, 4);
  const at::Tensor a = block->attend(in.q, in.k, in.v, in.grid);
  const at::Tensor b = block->attend(repad(in.q, 53), repad(in.k, 53), repad(in.v, 53), in.grid);
  EXPECT_TRUE(torch::allclose(a.narrow(2, 0, 53), b.narrow(2, 0, 53), 1e-6, 1e-6));
  EXPECT_EQ((block->last_edges().narrow(2, 0, 53) >= 53).sum().item<int64_t>(), 0);
}

// Fixed chunk and k: 4× the tokens, exactly 4× the products.
TEST(Sac, ProductsGrowLinearlyWithTheTokenCount) {
  Sac block(SacOptions(16));
  block->eval();
  auto macs = [&](int64_t n) {
    const PaddedInput in = padded_input(1, 4, n, n, 4);
    return counted_macs([&] { block->attend(in.q, in.k, in.v, in.grid); });
  };
  EXPECT_EQ(macs(4 * 1024), 4 * macs(1024));
}

// --- both -----------------------------------------------------------------------------

// The multiply-adds each block reports are the ones its forward executes, projections and core,
// on a 7×9 map whose 63 tokens need padding to the segment and the chunk.
TEST(TokenHost, ExecutedMultiplyAddsEqualTheAnalyticCountOfCompressiveAndSac) {
  std::vector<std::pair<std::string, AttentionBlock>> blocks{
      {"compressive", build_block("compressive", 16)},
      {"compressive small", Compressive(small_compressive()).ptr()},
      {"sac", build_block("sac", 16)},
      {"sac small", Sac(SacOptions(16).k(3).chunk(8)).ptr()}};
  for (auto& [name, block] : blocks) {
    block->eval();
    for (const auto& shape : std::vector<std::vector<int64_t>>{{2, 16, 7, 9}, {1, 16, 13, 29}}) {
      const at::Tensor x = torch::randn(shape);
      EXPECT_EQ(counted_macs([&] { block->forward(x); }), block->macs(shape))
          << name << " " << shape[2];
    }
  }
}

// The demo's 640×480 frames give a [1, C, 60, 80] map, not the trained 8×48.
TEST(TokenHost, CompressiveAndSacRunOnTheDemosSixtyByEightyMap) {
  for (const std::string name : {"compressive", "sac"}) {
    torch::manual_seed(10);
    const AttentionBlock block = build_block(name, 16);
    block->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor x = torch::randn({1, 16, 60, 80});
    const at::Tensor y = block->forward(x);
    EXPECT_EQ(y.sizes(), x.sizes()) << name;
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << name;
    EXPECT_GT((y - x).abs().max().item<double>(), 0) << name;
  }
}

// Maps with fewer tokens than one segment (compressive) or than k (sac, one chunk): mostly
// padding. The output and every gradient stay finite: no query is left with only masked keys.
TEST(TokenHost, CompressiveAndSacRunOnMapsSmallerThanASegmentOrK) {
  for (const std::string name : {"compressive", "sac"}) {
    for (const auto& shape : std::vector<std::vector<int64_t>>{{2, 16, 1, 1}, {1, 16, 2, 3}}) {
      torch::manual_seed(11);
      const AttentionBlock block = build_block(name, 16);
      const at::Tensor x = torch::randn(shape, torch::requires_grad());
      const at::Tensor y = block->forward(x);
      (y * torch::randn_like(y)).sum().backward();
      EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << name << " " << shape[3];
      EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>()) << name << " " << shape[3];
      for (const auto& p : block->parameters()) {
        if (p.grad().defined()) {
          EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>()) << name;
        }
      }
    }
  }
}

TEST(TokenHost, BadCompressiveAndSacOptionsNameTheBlockAndKey) {
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"{type: compressive, compressive: {segment: 0}}", "segment"},
           {"{type: compressive, compressive: {compression: 0}}", "compression"},
           {"{type: compressive, compressive: {mem_len: -1}}", "mem_len"},
           {"{type: sac, sac: {k: 40, chunk: 32}}", "k"},
           {"{type: sac, sac: {buckets: 5}}", "buckets"}}) {
    const std::string message = error_of(yaml);
    const std::string block = yaml.find("sac") != std::string::npos ? "sac" : "compressive";
    EXPECT_NE(message.find(block + ": " + key), std::string::npos) << yaml << ": " << message;
  }
}

}  // namespace
}  // namespace attnseg
