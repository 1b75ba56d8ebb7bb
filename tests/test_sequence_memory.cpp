// What makes memory_compressed, synthesizer and product_key real, beyond the registry-wide
// harness (test_blocks.cpp): ../shared/ATTENTION_CATALOG.md, "Sequence blocks".
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "attention/memory_compressed.h"
#include "attention/product_key.h"
#include "attention/registry.h"
#include "attention/synthesizer.h"
#include "core/error.h"
#include "engine/counters.h"
#include "fixture.h"
#include "memory_reference.h"
#include "sequence_test.h"

namespace attnseg {
namespace {

using test::counted_macs;
using test::relative_error;

// A raster grid with `padding` tokens appended.
TokenGrid raster_grid(int64_t h, int64_t w, int64_t padding = 0) {
  return padded_grid(TokenGrid{h, w, TokenOrder::raster, {}, 0, {}}, padding, torch::kCPU);
}

// --- all three ---------------------------------------------------------------------------

// The multiply-adds each block reports are the ones its forward pass executes, on a 7×9 map
// (63 tokens: memory_compressed pads them to a multiple of its block).
TEST(MemoryBlocks, ExecutedMultiplyAddsEqualTheAnalyticCountOfEveryBlock) {
  MemoryCompressedOptions all_local(16), all_memory(16);
  all_local.local_heads(4);
  all_memory.local_heads(0).compression(4);
  SynthesizerOptions random(16), factorized(16);
  random.kind("random");
  factorized.kind("factorized_random").rank(3);
  ProductKeyOptions plain(16);
  plain.query_norm(false).n_keys(6).topk(4);
  std::vector<std::pair<std::string, AttentionBlock>> blocks{
      {"memory_compressed", build_block("memory_compressed", 16)},
      {"memory_compressed all local", MemoryCompressed(all_local).ptr()},
      {"memory_compressed all memory", MemoryCompressed(all_memory).ptr()},
      {"synthesizer dense", build_block("synthesizer", 16)},
      {"synthesizer random", Synthesizer(random).ptr()},
      {"synthesizer factorized_random", Synthesizer(factorized).ptr()},
      {"product_key", build_block("product_key", 16)},
      {"product_key without query_norm", ProductKey(plain).ptr()}};
  for (auto& [name, block] : blocks) {
    block->eval();
    const at::Tensor x = torch::randn({2, 16, 7, 9});
    EXPECT_EQ(counted_macs([&] { block->forward(x); }), block->macs({2, 16, 7, 9})) << name;
  }
}

// Each block on the demo's 640×480 frames: a [1, C, 60, 80] feature map, 4800 tokens, with the
// defaults' trained map (8×48) resampled where a parameter depends on it.
TEST(MemoryBlocks, EachRunsOnTheDemosSixtyByEightyFeatureMap) {
  SynthesizerOptions random(16);
  random.kind("random").host().heads(2);
  std::vector<std::pair<std::string, AttentionBlock>> blocks{
      {"memory_compressed", build_block("memory_compressed", 16)},
      {"synthesizer dense", build_block("synthesizer", 16)},
      {"synthesizer random", Synthesizer(random).ptr()},
      {"product_key", build_block("product_key", 16)}};
  torch::manual_seed(0);
  const at::Tensor x = torch::randn({1, 16, 60, 80});
  for (auto& [name, block] : blocks) {
    block->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor y = block->forward(x);
    EXPECT_EQ(y.sizes(), x.sizes()) << name;
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << name;
    EXPECT_GT((y - x).abs().mean().item<double>(), 1e-4) << name << ": the block added nothing";
  }
}

// The host builds only the projections a block reads (TokenHostImpl::inputs): synthesizer reads
// no keys, its random kinds no queries either, product_key neither keys nor values. What is not
// built is not computed (the executed products equal macs(), above), trained or saved; converted
// to double, each block runs on a double input.
TEST(MemoryBlocks, TheHostBuildsOnlyTheProjectionsTheBlockReads) {
  SynthesizerOptions random(16);
  random.kind("random").host().map_size({5, 7});
  const std::vector<std::tuple<std::string, AttentionBlock, std::vector<std::string>>> blocks{
      {"synthesizer dense", build_block("synthesizer", 16), {"to_q", "to_v"}},
      {"synthesizer random", Synthesizer(random).ptr(), {"to_v"}},
      {"product_key", build_block("product_key", 16), {"to_q"}}};
  for (const auto& [name, block, built] : blocks) {
    for (const std::string projection : {"to_q", "to_k", "to_v"}) {
      const bool expected = std::find(built.begin(), built.end(), projection) != built.end();
      EXPECT_EQ(block->named_children().contains(projection), expected) << name << " " << projection;
    }
    block->eval();
    block->to(torch::kDouble);
    torch::NoGradGuard no_grad;
    const at::Tensor y = block->forward(torch::randn({1, 16, 5, 7}, torch::kDouble));
    EXPECT_EQ(y.scalar_type(), torch::kDouble) << name;
  }
}

TEST(MemoryBlocks, BadOptionsNameTheBlockAndTheKey) {
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"{type: memory_compressed, memory_compressed: {local_heads: 5}}", "local_heads"},
           {"{type: memory_compressed, memory_compressed: {compression: 0}}", "compression"},
           {"{type: synthesizer, synthesizer: {kind: tied}}", "kind"},
           {"{type: synthesizer, synthesizer: {rank: 0}}", "rank"},
           {"{type: product_key, product_key: {topk: 40}}", "topk"},
           {"{type: product_key, product_key: {dim_head: 5}}", "head width"}}) {
    const Config bad = Config::from_string(yaml, "test");
    try {
      configure_block(bad.root(), 16);
      ADD_FAILURE() << "no error for " << yaml;
    } catch (const Error& e) {
      const std::string message = e.what(), block = yaml.substr(7, yaml.find(',') - 7);
      EXPECT_NE(message.find(key), std::string::npos) << message;
      EXPECT_NE(message.find(block + ":"), std::string::npos) << message;
    }
  }
}

// --- memory_compressed --------------------------------------------------------------------

TEST(MemoryCompressed, CompressedKeyLengthIsTheCeilingOfNOverS) {
  for (const int64_t s : {2, 3, 5}) {
    for (const int64_t n : {1, 7, 9, 10, 63, 64}) {
      const at::Tensor x = torch::randn({1, 2, n, 4});
      const at::Tensor memory = functional::strided_memory(x, torch::randn({8, 4, s}), torch::randn({8}), s);
      EXPECT_EQ(memory.sizes(), (std::vector<int64_t>{1, 2, (n + s - 1) / s, 4})) << "N " << n << ", s " << s;
    }
  }
}

// The compression against lucidrains/memory-compressed-attention's ConvCompress (float64;
// fixture recorded by tools/reference/memory_compressed.py): 3 heads of width 4, 12 tokens,
// factor 3; the reference's channels are heads-major, as the host's heads are.
TEST(MemoryCompressed, CompressionMatchesTheReferencesConvCompress) {
  const test::Fixture f = test::load_fixture("memory_compressed");
  const at::Tensor x = f["x"].view({2, 12, 3, 4}).transpose(1, 2);                 // [B, heads, N, d]
  const at::Tensor y = functional::strided_memory(x, f["weight"], f["bias"], 3);  // [B, heads, 4, d]
  EXPECT_LT(test::max_relative_error(y.transpose(1, 2).reshape({2, 4, 12}), f["y"]), 1e-12);
}

// The block's attend on a 7×9 map padded to 64 tokens (blocks of 8): two local heads and two
// memory heads against the float64 loops, at the real tokens; compressed by 3 (the padded token
// alone in the last window, which is masked) and by 4 (the padded token in the last window
// beside three real ones).
TEST(MemoryCompressed, AttendEqualsTheFloat64ReferenceOnAPaddedOddMap) {
  for (const int64_t s : {3, 4}) {
    MemoryCompressedOptions options(16);
    options.block(8).compression(s).local_heads(2).host().heads(4);
    torch::manual_seed(1);
    MemoryCompressed block(options);
    const auto q = torch::randn({2, 4, 64, 4}), k = torch::randn({2, 4, 64, 4}), v = torch::randn({2, 4, 64, 4});
    torch::NoGradGuard no_grad;
    const at::Tensor out = block->attend(q, k, v, raster_grid(7, 9, 1)).narrow(2, 0, 63);
    const at::Tensor ref =
        test::memory_compressed_reference(q, k, v, block->compress_weight, block->compress_bias, s, 8, 2, 63);
    EXPECT_LT(relative_error(out, ref.narrow(2, 0, 63)), 1e-5) << "compression " << s;
  }
}

// With every head local, token i's output depends on the keys and values of its own block
// only, and on each of them; with two memory heads beside, the local heads' outputs still do.
TEST(MemoryCompressed, LocalHeadsDependOnlyOnTheirOwnBlock) {
  for (const int64_t local : {4, 2}) {
    MemoryCompressedOptions options(16);
    options.block(8).local_heads(local).host().heads(4);
    MemoryCompressed block(options);
    const auto q = torch::randn({1, 4, 64, 4});
    const auto k = torch::randn({1, 4, 64, 4}, torch::requires_grad()),
               v = torch::randn({1, 4, 64, 4}, torch::requires_grad());
    const int64_t token = 21;  // block 2: tokens 16..23
    block->attend(q, k, v, raster_grid(7, 9, 1)).narrow(1, 0, local).select(2, token).sum().backward();
    const at::Tensor reach = (k.grad().abs().sum({0, 1, 3}) + v.grad().abs().sum({0, 1, 3})) > 0;  // [64]
    for (int64_t j = 0; j < 64; ++j) EXPECT_EQ(reach[j].item<bool>(), j >= 16 && j < 24) << "token " << j;
  }
}

// A memory head reads every window: with every head on memory, each real token reaches the
// output of token 0 (the memory holds the whole map), the padded one (in the last window of 4
// beside three real ones) does not.
TEST(MemoryCompressed, MemoryHeadsReachEveryRealTokenAndNoPaddedOne) {
  MemoryCompressedOptions options(16);
  options.block(8).compression(4).local_heads(0).host().heads(4);
  MemoryCompressed block(options);
  const auto q = torch::randn({1, 4, 64, 4});
  const auto k = torch::randn({1, 4, 64, 4}, torch::requires_grad()),
             v = torch::randn({1, 4, 64, 4}, torch::requires_grad());
  block->attend(q, k, v, raster_grid(7, 9, 1)).select(2, 0).sum().backward();
  const at::Tensor reach = (k.grad().abs().sum({0, 1, 3}) + v.grad().abs().sum({0, 1, 3})) > 0;
  EXPECT_TRUE(reach.narrow(0, 0, 63).all().item<bool>());
  EXPECT_FALSE(reach[63].item<bool>());
}

// The host pads 63 tokens to 64; whatever the padded token's q, k, v hold, the real tokens'
// outputs stay the same (local and memory heads), with the padded token alone in the last
// compression window (s = 3) or sharing it with real ones (s = 4).
TEST(MemoryCompressed, PaddedTokensValuesNeverChangeRealOutputs) {
  for (const int64_t s : {3, 4}) {
    MemoryCompressedOptions options(16);
    options.block(8).compression(s).local_heads(2).host().heads(4);
    MemoryCompressed block(options);
    const auto q = torch::randn({2, 4, 64, 4}), k = torch::randn({2, 4, 64, 4}), v = torch::randn({2, 4, 64, 4});
    at::Tensor q2 = q.clone(), k2 = k.clone(), v2 = v.clone();
    for (auto* t : {&q2, &k2, &v2}) t->narrow(2, 63, 1).normal_(0.0, 10.0);
    torch::NoGradGuard no_grad;
    const TokenGrid grid = raster_grid(7, 9, 1);
    const at::Tensor a = block->attend(q, k, v, grid).narrow(2, 0, 63);
    const at::Tensor b = block->attend(q2, k2, v2, grid).narrow(2, 0, 63);
    EXPECT_TRUE(torch::allclose(a, b, 1e-6, 1e-6)) << "compression " << s << ": " << (a - b).abs().max().item<double>();
  }
}

// O(N²C/s): the counted products of the memory heads are those of full attention divided by
// s (plus the convolution's N·d² per head), at s = 2, 3 and 6 on 1200 tokens; and quadrupling
// the tokens multiplies them by 16 (to within the convolution's linear term).
TEST(MemoryCompressed, CountedProductsAreFullAttentionsOverTheCompression) {
  const int64_t n = 1200, d = 8;
  const auto q = torch::randn({1, 4, n, d});
  const int64_t full = counted_macs([&] { at::matmul(at::softmax(at::matmul(q, q.transpose(-2, -1)), -1), q); });
  auto memory_macs = [&](int64_t s, const at::Tensor& x) {
    MemoryCompressedOptions options(32);
    options.block(16).compression(s).local_heads(0).host().heads(4);
    MemoryCompressed block(options);
    const int64_t tokens = x.size(2);
    return counted_macs([&] { block->attend(x, x, x, raster_grid(1, tokens)); });
  };
  for (const int64_t s : {2, 3, 6}) {
    const double ratio = static_cast<double>(memory_macs(s, q)) / static_cast<double>(full);
    std::printf("memory_compressed s=%ld: counted products %.4f of full attention's\n", static_cast<long>(s), ratio);
    EXPECT_GT(ratio, 1.0 / s);
    EXPECT_LT(ratio, 1.0 / s + 2.0 * d / static_cast<double>(n) + 1e-9);  // conv: 2·N·d² against 2·N²·d
  }
  const double growth = static_cast<double>(memory_macs(3, torch::randn({1, 4, 4 * n, d}))) / memory_macs(3, q);
  EXPECT_GT(growth, 15.5);
  EXPECT_LE(growth, 16.0);
}

// --- synthesizer --------------------------------------------------------------------------

SynthesizerOptions synthesizer_options(const std::string& kind) {
  SynthesizerOptions options(16);
  options.kind(kind).hidden(6).rank(3).host().map_size({5, 7});
  return options;
}

// No query-key product: the output is the same whatever the keys hold, for every kind (and the
// random kinds ignore the queries as well); the block registers no key projection.
TEST(Synthesizer, OutputDoesNotDependOnTheKeysForAnyKind) {
  for (const std::string kind : {"dense", "random", "factorized_random"}) {
    torch::manual_seed(2);
    Synthesizer block(synthesizer_options(kind));
    const auto q = torch::randn({2, 4, 35, 4}), v = torch::randn({2, 4, 35, 4});
    torch::NoGradGuard no_grad;
    const TokenGrid grid = raster_grid(5, 7);
    const at::Tensor a = block->attend(q, torch::randn({2, 4, 35, 4}), v, grid);
    EXPECT_TRUE(torch::equal(a, block->attend(q, torch::randn({2, 4, 35, 4}), v, grid))) << kind;
    EXPECT_EQ(block->named_parameters().find("to_k.weight"), nullptr) << kind;
    if (kind != "dense") {
      EXPECT_TRUE(torch::equal(a, block->attend(torch::randn({2, 4, 35, 4}), q, v, grid))) << kind;
    }
  }
}

// At the trained size (5×7, raster) each kind's output equals its float64 loop: dense from the
// per-token MLP, random from R, factorized_random from R1 R2ᵀ.
TEST(Synthesizer, EachKindEqualsTheFloat64ReferenceAtTheTrainedSize) {
  torch::manual_seed(3);
  const auto q = torch::randn({2, 4, 35, 4}), v = torch::randn({2, 4, 35, 4});
  const TokenGrid grid = raster_grid(5, 7);
  torch::NoGradGuard no_grad;
  Synthesizer dense(synthesizer_options("dense"));
  const at::Tensor dense_logits =
      test::dense_synthesizer_logits_reference(q, dense->w1, dense->b1, dense->w2.flatten(2), dense->b2.flatten(1));
  EXPECT_LT(relative_error(dense->attend(q, q, v, grid), test::synthesized_reference(dense_logits, v)), 1e-5);
  Synthesizer random(synthesizer_options("random"));
  EXPECT_LT(relative_error(random->attend(q, q, v, grid), test::synthesized_reference(random->r.unsqueeze(0), v)),
            1e-5);
  Synthesizer factorized(synthesizer_options("factorized_random"));
  EXPECT_LT(
      relative_error(factorized->attend(q, q, v, grid),
                     test::synthesized_reference(test::factorized_logits_reference(factorized->r1, factorized->r2), v)),
      1e-5);
}

// random's attention matrix is a parameter: the same for two different inputs (and batches).
TEST(Synthesizer, RandomAttentionMatrixIsTheSameForTwoDifferentInputs) {
  for (const std::string kind : {"random", "factorized_random"}) {
    Synthesizer block(synthesizer_options(kind));
    torch::NoGradGuard no_grad;
    const at::Tensor a = block->logits(torch::randn({1, 4, 35, 4}), raster_grid(5, 7));
    const at::Tensor b = block->logits(torch::randn({3, 4, 35, 4}), raster_grid(5, 7));
    EXPECT_TRUE(torch::equal(at::softmax(a, -1), at::softmax(b, -1))) << kind;
  }
  Synthesizer dense(synthesizer_options("dense"));
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(torch::equal(dense->logits(torch::randn({1, 4, 35, 4}), raster_grid(5, 7)),
                            dense->logits(torch::randn({1, 4, 35, 4}), raster_grid(5, 7))))
      << "dense rows should depend on the token";
}

// The paper's fixed random synthesizer (trainable: false): R is a buffer, saved with the block,
// that no gradient reaches; trainable, R is a parameter that the loss moves.
TEST(Synthesizer, FixedRandomKeepsRAsABufferNoGradientReaches) {
  for (const bool trainable : {false, true}) {
    SynthesizerOptions options = synthesizer_options("random");
    options.trainable(trainable);
    Synthesizer block(options);
    EXPECT_EQ(block->named_parameters().find("r") != nullptr, trainable);
    EXPECT_EQ(block->named_buffers().find("r") != nullptr, !trainable);
    const at::Tensor y = block->forward(torch::randn({1, 16, 5, 7}));
    (y * torch::randn_like(y)).sum().backward();
    EXPECT_EQ(block->r.grad().defined(), trainable);
  }
}

// At another size the key axis (and random's query axis) is resampled bilinearly in 2-D: a map
// of twice the trained size sees, at the pixel block (2y..2y+1, 2x..2x+1), the trained table's
// bilinear interpolation; checked against upsample of the table itself, then in tile order the
// same logits permuted; and the block runs at 9×13 and 60×80.
TEST(Synthesizer, RunsAtResolutionsOtherThanTheTrainedOne) {
  for (const std::string kind : {"dense", "random", "factorized_random"}) {
    torch::manual_seed(4);
    Synthesizer block(synthesizer_options(kind));
    torch::NoGradGuard no_grad;
    const auto q = torch::randn({1, 4, 10 * 14, 4});
    const at::Tensor raster = block->logits(q, raster_grid(10, 14));
    ASSERT_EQ(raster.sizes(), (std::vector<int64_t>{raster.size(0), 4, 140, 140})) << kind;
    if (kind == "random") {
      const at::Tensor table = block->r.view({4 * 35, 5, 7});
      const at::Tensor keys = at::upsample_bilinear2d(table.unsqueeze(0), {10, 14}, false).view({4, 35, 140});
      const at::Tensor both = at::upsample_bilinear2d(keys.transpose(1, 2).reshape({1, 4 * 140, 5, 7}), {10, 14}, false)
                                  .view({4, 140, 140});
      EXPECT_TRUE(torch::allclose(raster[0], both.transpose(1, 2), 1e-5, 1e-5)) << kind;
    }
    TokenGrid tiles{10, 14, TokenOrder::tiles, token_permutation(10, 14, TokenOrder::tiles, 4), 0, {}};
    const at::Tensor order = tiles.pixel_of;
    const at::Tensor tiled = block->logits(kind == "dense" ? q.index_select(2, order) : q, tiles);
    EXPECT_TRUE(torch::allclose(tiled, raster.index_select(2, order).index_select(3, order), 1e-5, 1e-5)) << kind;
    for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{9, 13}, {60, 80}}) {
      const at::Tensor y =
          block->attend(torch::randn({1, 4, h * w, 4}), {}, torch::randn({1, 4, h * w, 4}), raster_grid(h, w));
      EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 4, h * w, 4})) << kind;
      EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << kind;
    }
  }
}

// --- product_key --------------------------------------------------------------------------

// Per query and head, 2·n_keys sub-keys are scored (2·√M, here 64 of M = 1024), and those are
// all the scoring products executed: the counted multiply-adds of the top-k search are
// scored_keys · d/2, against M·d for scoring every product key.
TEST(ProductKey, ScoresTwoSqrtMSubKeysPerQueryNeverAllMKeys) {
  ProductKeyOptions options(16);
  options.n_keys(32).topk(8).host().heads(4);
  ProductKey block(options);
  block->eval();
  const at::Tensor x = torch::randn({2, 16, 7, 9});
  torch::NoGradGuard no_grad;
  block->forward(x);
  const int64_t queries = 2 * 4 * 63, d = 4;
  EXPECT_EQ(block->scored_keys(), queries * 2 * 32);
  const auto q = torch::randn({2, 4, 63, d});
  const int64_t search = counted_macs([&] { functional::product_key_topk(q, block->sub_keys, 8); });
  EXPECT_EQ(search, block->scored_keys() * d / 2);
  EXPECT_LT(search * 16, queries * 1024 * d);  // 2·√M·d/2 = 64·d/2 against M·d = 1024·d
}

// The top-k of the k² combined scores is the top-k over all n_keys² product keys (brute force in
// float64), for k from 1 to n_keys, on 63 queries.
TEST(ProductKey, TopKOfTheCombinationsEqualsBruteForceTopKOverAllProductKeys) {
  torch::manual_seed(5);
  const auto q = torch::randn({1, 2, 63, 6}, torch::kDouble), sub_keys = torch::randn({2, 2, 11, 3}, torch::kDouble);
  for (const int64_t k : {1, 3, 7, 11}) {
    const auto [scores, indices] = functional::product_key_topk(q, sub_keys, k);
    const auto [ref_scores, ref_indices] = test::product_key_brute_force(q, sub_keys, k);
    EXPECT_TRUE(torch::equal(indices, ref_indices)) << "k " << k;
    EXPECT_LT((scores - ref_scores).abs().max().item<double>(), 1e-12) << "k " << k;
  }
}

// The read is sparse: the value table's gradient is non-zero exactly on the rows read.
TEST(ProductKey, GradientReachesOnlyTheValueRowsRead) {
  ProductKeyOptions options(16);
  options.n_keys(16).topk(4).query_norm(false);
  torch::manual_seed(6);
  ProductKey block(options);
  const auto q = torch::randn({1, 4, 5, 4});
  const at::Tensor y = block->attend(q, {}, {}, raster_grid(1, 5));
  (y * torch::randn_like(y)).sum().backward();
  const auto [scores, indices] = functional::product_key_topk(q, block->sub_keys.detach(), 4);
  std::set<int64_t> read;
  for (int64_t i = 0; i < indices.numel(); ++i) read.insert(indices.flatten()[i].item<int64_t>());
  const at::Tensor touched = block->values.grad().abs().sum(1) > 0;
  ASSERT_LT(read.size(), 256u);
  for (int64_t row = 0; row < 256; ++row) EXPECT_EQ(touched[row].item<bool>(), read.count(row) == 1) << "row " << row;
}

// Only the query is read: the host's keys and values do not enter, and their projections are
// not parameters of the block.
TEST(ProductKey, OutputIgnoresTheHostsKeysAndValues) {
  ProductKey block(ProductKeyOptions(16));
  block->eval();
  const auto q = torch::randn({1, 4, 35, 4});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(
      torch::equal(block->attend(q, torch::randn({1, 4, 35, 4}), torch::randn({1, 4, 35, 4}), raster_grid(5, 7)),
                   block->attend(q, torch::randn({1, 4, 35, 4}), torch::randn({1, 4, 35, 4}), raster_grid(5, 7))));
  EXPECT_EQ(block->named_parameters().find("to_k.weight"), nullptr);
  EXPECT_EQ(block->named_parameters().find("to_v.weight"), nullptr);
}

// Against XLM's HashingMemory (PKM-layer.ipynb, float64; fixture recorded by
// tools/reference/product_key.py): with the reference's queries, sub-keys and values, the same
// product keys in the same order, the same scores, and the heads' reads summed (XLM's one
// EmbeddingBag over all heads) equal to the reference's output. 14 queries, 3 heads,
// n_keys 9, k 5. The search is exact (1e-12); the read to float32's precision only, since XLM
// takes its softmax in float32 (`F.softmax(scores.float())`) even on float64 inputs.
TEST(ProductKey, MatchesXlmsHashingMemory) {
  const test::Fixture f = test::load_fixture("product_key");
  const at::Tensor q = f["query"].permute({1, 0, 2}).unsqueeze(0);  // [1, heads, 14, k_dim]
  const auto [scores, indices] = functional::product_key_topk(q, f["keys"], 5);
  EXPECT_TRUE(torch::equal(indices.squeeze(0).permute({1, 0, 2}), f["indices"].to(torch::kLong)));
  EXPECT_LT((scores.squeeze(0).permute({1, 0, 2}) - f["scores"]).abs().max().item<double>(), 1e-12);
  const at::Tensor read = functional::product_key_read(scores, indices, f["values"]).squeeze(0).sum(0);  // [14, v]
  EXPECT_LT(test::max_relative_error(read, f["y"].reshape({14, -1})), 1e-6);
}

// Linear in the tokens: 4× the tokens, exactly 4× the products (full attention: 16×).
TEST(ProductKey, ProductsGrowLinearlyWithTheTokenCount) {
  ProductKey block(ProductKeyOptions(16));
  block->eval();
  auto macs = [&](int64_t h, int64_t w) {
    const auto q = torch::randn({1, 4, h * w, 4});
    return counted_macs([&] { block->attend(q, q, q, raster_grid(h, w)); });
  };
  EXPECT_EQ(macs(14, 18), 4 * macs(7, 9));
}

}  // namespace
}  // namespace attnseg
