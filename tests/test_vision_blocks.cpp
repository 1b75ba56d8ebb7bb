// What makes each vision block real, beyond the shared harness in test_blocks.cpp: the
// reference implementation's numbers (tests/fixtures/, recorded by tools/reference/), the
// cheap order of products equal to the expensive one, and each block's defining property.
#include <gtest/gtest.h>

#include <cmath>
#include <torch/torch.h>

#include <cstdio>
#include <sstream>

#include "attention/autonl.h"
#include "attention/axial.h"
#include "attention/cbam.h"
#include "attention/efficient.h"
#include "attention/ema.h"
#include "attention/fast_l2.h"
#include "attention/gcnet.h"
#include "attention/isa.h"
#include "attention/functional.h"
#include "attention/scram.h"
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

// --- cbam --------------------------------------------------------------------------------

TEST(Cbam, MatchesTheReferenceImplementation) {
  const test::Fixture f = load_fixture("cbam");
  Cbam block(CbamOptions(32));
  block->eval();
  block->to(torch::kDouble);
  copy_weights(*block, f, test::kCbamFixtureNames);
  EXPECT_LT(max_relative_error(block->forward(f["x"]), f["y"]), 1e-12);
}

TEST(Cbam, GatesLieStrictlyBetweenZeroAndOne) {
  torch::manual_seed(0);
  Cbam block(CbamOptions(32));
  const at::Tensor x = 3 * torch::randn({2, 32, 9, 13});
  for (const at::Tensor& gate : {block->channel_gate(x), block->spatial_gate(x)}) {
    EXPECT_GT(gate.min().item<float>(), 0.0f);
    EXPECT_LT(gate.max().item<float>(), 1.0f);
  }
  EXPECT_EQ(block->channel_gate(x).sizes(), (std::vector<int64_t>{2, 32, 1, 1}));
  EXPECT_EQ(block->spatial_gate(x).sizes(), (std::vector<int64_t>{2, 1, 9, 13}));
}

TEST(Cbam, ChannelGateComesBeforeSpatialGate) {
  torch::manual_seed(0);
  Cbam block(CbamOptions(32));
  block->eval();
  const at::Tensor x = torch::randn({1, 32, 9, 13});
  const at::Tensor channel_first = x * block->channel_gate(x);
  const at::Tensor expected = channel_first * block->spatial_gate(channel_first);
  const at::Tensor spatial_first = x * block->spatial_gate(x);
  const at::Tensor swapped = spatial_first * block->channel_gate(spatial_first);
  const at::Tensor y = block->forward(x);
  EXPECT_TRUE(torch::allclose(y, expected, 1e-6, 1e-7));
  EXPECT_FALSE(torch::allclose(y, swapped, 1e-3, 1e-4));  // the order matters for these weights
}

TEST(Cbam, MultiplyAddsMatchHandCount) {
  // C=32, hidden 2, N=35, k=7: MLP on two descriptors 2·2·32·2, conv 35·2·49, gating 2·35·32.
  Cbam block(CbamOptions(32));
  EXPECT_EQ(block->macs({1, 32, 5, 7}), 2 * 2 * 32 * 2 + 35 * 2 * 49 + 2 * 35 * 32);
}

// --- gcnet -------------------------------------------------------------------------------

TEST(GlobalContext, MatchesTheReferenceImplementation) {
  const test::Fixture f = load_fixture("gcnet");
  GlobalContext block(GlobalContextOptions(16));
  block->to(torch::kDouble);
  copy_weights(*block, f,
               {{"mask.weight", "conv_mask.weight"}, {"mask.bias", "conv_mask.bias"},
                {"down.weight", "channel_add_conv.0.weight"}, {"down.bias", "channel_add_conv.0.bias"},
                {"norm.weight", "channel_add_conv.1.weight"}, {"norm.bias", "channel_add_conv.1.bias"},
                {"up.weight", "channel_add_conv.3.weight"}, {"up.bias", "channel_add_conv.3.bias"}});
  EXPECT_LT(max_relative_error(block->forward(f["x"]), f["y"]), 1e-12);
}

TEST(GlobalContext, AddsTheSameVectorAtEveryPosition) {
  torch::manual_seed(0);
  GlobalContext block(GlobalContextOptions(16).zero_init(false));
  const at::Tensor x = torch::randn({2, 16, 11, 13}, torch::kDouble);
  block->to(torch::kDouble);
  const at::Tensor added = (block->forward(x) - x).flatten(2);  // [B, C, N]
  EXPECT_GT(added.abs().max().item<double>(), 1e-3);               // it adds something
  EXPECT_LT((added - added.mean(2, true)).abs().max().item<double>(), 1e-12);  // the same everywhere
}

TEST(GlobalContext, StartsAsIdentityByDefault) {
  GlobalContext block(GlobalContextOptions(16));
  const at::Tensor x = torch::randn({1, 16, 5, 6});
  EXPECT_TRUE(torch::equal(block->forward(x), x));
}

TEST(GlobalContext, MultiplyAddsMatchHandCount) {
  // C=64, planes 16, N=35: mask conv 35·64, pooling 35·64, bottleneck 2·64·16.
  GlobalContext block(GlobalContextOptions(64));
  EXPECT_EQ(block->macs({2, 64, 5, 7}), 2 * (35 * 64 + 35 * 64 + 2 * 64 * 16));
}

// --- ema ---------------------------------------------------------------------------------

Ema ema_from_fixture(const test::Fixture& f) {
  Ema block(EmaOptions(16).bases(8).iterations(3));
  block->to(torch::kDouble);
  copy_weights(*block, f,
               {{"mu", "mu"}, {"conv1.weight", "conv1.weight"}, {"conv1.bias", "conv1.bias"},
                {"conv2.weight", "conv2.0.weight"}, {"norm.weight", "conv2.1.weight"}, {"norm.bias", "conv2.1.bias"},
                {"norm.running_mean", "conv2.1.running_mean"}, {"norm.running_var", "conv2.1.running_var"}});
  return block;
}

TEST(Ema, MatchesTheReferenceInEvalAndTrainingModeAndMovesItsBasesLikeIt) {
  const test::Fixture f = load_fixture("ema");
  Ema block = ema_from_fixture(f);
  block->eval();
  EXPECT_LT(max_relative_error(block->forward(f["x"]), f["y_eval"]), 1e-10);
  block->train();
  EXPECT_LT(max_relative_error(block->forward(f["x"]), f["y_train"]), 1e-10);
  EXPECT_LT(max_relative_error(block->mu, f["mu_after_train_step"]), 1e-10);
}

TEST(Ema, BasesMoveOnlyInTrainingMode) {
  torch::manual_seed(0);
  Ema block(EmaOptions(16).bases(8));
  const at::Tensor x = torch::randn({2, 16, 9, 11});
  const at::Tensor before = block->mu.clone();
  block->eval();
  block->forward(x);
  EXPECT_TRUE(torch::equal(block->mu, before));
  block->train();
  block->forward(x);
  EXPECT_GT((block->mu - before).abs().max().item<float>(), 1e-4);
}

TEST(Ema, BasesTravelWithTheSavedModule) {
  torch::manual_seed(0);
  Ema a(EmaOptions(16).bases(8));
  a->train();
  a->forward(torch::randn({2, 16, 9, 11}));
  torch::manual_seed(1);
  Ema b(EmaOptions(16).bases(8));
  std::stringstream stream;
  torch::serialize::OutputArchive out;
  a->save(out);
  out.save_to(stream);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  b->load(in);
  EXPECT_TRUE(torch::equal(a->mu, b->mu));
}

TEST(Ema, MultiplyAddsMatchHandCount) {
  // C=16, K=8, T=3, N=35: two convs 2·35·16·16, EM (2·3+1)·35·16·8.
  Ema block(EmaOptions(16).bases(8).iterations(3));
  EXPECT_EQ(block->macs({1, 16, 5, 7}), 2 * 35 * 16 * 16 + 7 * 35 * 16 * 8);
}

// --- axial -------------------------------------------------------------------------------

Axial axial_from_fixture(const test::Fixture& f) {
  Axial block(AxialOptions(16).heads(8).embedding_size({5, 7}));
  block->to(torch::kDouble);
  std::vector<std::pair<std::string, std::string>> names{{"height_embedding", "pos.param_0"},
                                                         {"width_embedding", "pos.param_1"}};
  for (int i = 0; i < 2; ++i) {
    const std::string ours = i == 0 ? "height" : "width";
    const std::string theirs = "attention.axial_attentions." + std::to_string(i) + ".fn.";
    names.insert(names.end(), {{ours + "_q.weight", theirs + "to_q.weight"}, {ours + "_kv.weight", theirs + "to_kv.weight"},
                               {ours + "_out.weight", theirs + "to_out.weight"}, {ours + "_out.bias", theirs + "to_out.bias"}});
  }
  copy_weights(*block, f, names);
  return block;
}

TEST(Axial, MatchesTheReferenceImplementation) {
  const test::Fixture f = load_fixture("axial");
  Axial block = axial_from_fixture(f);
  EXPECT_LT(max_relative_error(block->axis_pass(f["x"], 2), f["height_only"]), 1e-12);
  EXPECT_LT(max_relative_error(block->axis_pass(f["x"], 3), f["width_only"]), 1e-12);
  EXPECT_LT(max_relative_error(block->forward(f["x"]), f["y"]), 1e-12);
}

// Which input pixels influence output pixel (y, x) of one pass: the input gradient's support.
at::Tensor pass_influence(Axial& block, int64_t axis, int64_t h, int64_t w, int64_t y, int64_t x) {
  const at::Tensor input = torch::randn({1, 16, h, w}, torch::requires_grad());
  block->axis_pass(input, axis).select(2, y).select(2, x).sum().backward();
  return input.grad().abs().sum(1).squeeze(0) > 0;
}

TEST(Axial, HeightPassMixesOnlyAColumnAndWidthPassOnlyARow) {
  torch::manual_seed(0);
  Axial block(AxialOptions(16).heads(4));
  const int64_t h = 11, w = 13, y = 4, x = 9;
  const at::Tensor column = pass_influence(block, 2, h, w, y, x), row = pass_influence(block, 3, h, w, y, x);
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      EXPECT_EQ(column[i][j].item<bool>(), j == x) << i << "," << j;
      EXPECT_EQ(row[i][j].item<bool>(), i == y) << i << "," << j;
    }
  }
}

TEST(Axial, RunsAtResolutionsOtherThanItsEmbeddingSize) {
  torch::manual_seed(0);
  Axial block(AxialOptions(16).heads(4).embedding_size({8, 12}));
  EXPECT_TRUE(torch::equal(block->positions(8, 12), block->height_embedding + block->width_embedding));
  for (const auto& size : std::vector<std::pair<int64_t, int64_t>>{{5, 7}, {17, 29}}) {
    const at::Tensor y = block->forward(torch::randn({1, 16, size.first, size.second}));
    EXPECT_EQ(y.size(2), size.first);
    EXPECT_EQ(y.size(3), size.second);
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  }
}

// embedding_std scales the reference's randn initialisation of the positional embeddings and
// nothing else: the same draws (the same seed gives embeddings in ratio 1/50 exactly), the
// same attention weights; 0 gives no positional term; a negative or non-finite value is refused.
TEST(Axial, EmbeddingStdScalesTheReferenceInitialisationAlone) {
  torch::manual_seed(3);
  Axial reference(AxialOptions(64).heads(4).embedding_size({8, 48}));
  torch::manual_seed(3);
  Axial small(AxialOptions(64).heads(4).embedding_size({8, 48}).embedding_std(0.02));
  EXPECT_TRUE(torch::allclose(small->height_embedding, reference->height_embedding * 0.02, 0, 1e-7));
  EXPECT_TRUE(torch::allclose(small->width_embedding, reference->width_embedding * 0.02, 0, 1e-7));
  EXPECT_NEAR(reference->positions(8, 48).pow(2).mean().sqrt().item<double>(), std::sqrt(2.0), 0.1);
  for (const char* name : {"height_q.weight", "width_kv.weight", "width_out.bias"}) {
    EXPECT_TRUE(torch::equal(*small->named_parameters().find(name), *reference->named_parameters().find(name))) << name;
  }
  Axial none(AxialOptions(16).heads(4).embedding_std(0));
  EXPECT_EQ(none->positions(5, 7).abs().max().item<double>(), 0.0);
  EXPECT_THROW(Axial(AxialOptions(16).heads(4).embedding_std(-1)), c10::Error);
  EXPECT_THROW(Axial(AxialOptions(16).heads(4).embedding_std(std::nan(""))), c10::Error);
}

TEST(Axial, MultiplyAddsMatchHandCount) {
  // C=16, H=5, W=7, N=35: two passes of 4·35·16² projections, scores+sums 2·35·16·(5+7).
  Axial block(AxialOptions(16));
  EXPECT_EQ(block->macs({1, 16, 5, 7}), 2 * 4 * 35 * 256 + 2 * 35 * 16 * 12);
}

// --- isa ---------------------------------------------------------------------------------

std::vector<std::pair<std::string, std::string>> isa_names() {
  std::vector<std::pair<std::string, std::string>> names;
  auto bn = [&](const std::string& ours, const std::string& theirs) {
    for (const std::string p : {"weight", "bias", "running_mean", "running_var"}) names.push_back({ours + p, theirs + p});
  };
  for (const auto& [ours, theirs] : {std::pair<std::string, std::string>{"long_range.", "long_range_sa."},
                                     {"short_range.", "short_range_sa."}}) {
    for (const auto& [q, f] : {std::pair<std::string, std::string>{"query.", "f_query."}, {"key.", "f_key."}}) {
      names.push_back({ours + q + "0.weight", theirs + f + "0.weight"});
      bn(ours + q + "1.", theirs + f + "1.0.");
      names.push_back({ours + q + "3.weight", theirs + f + "2.weight"});
      bn(ours + q + "4.", theirs + f + "3.0.");
    }
    names.push_back({ours + "value.weight", theirs + "f_value.weight"});
    names.push_back({ours + "out.0.weight", theirs + "W.0.weight"});
    bn(ours + "out.1.", theirs + "W.1.0.");
  }
  return names;
}

TEST(Isa, MatchesTheReferenceOnASizeThatNeedsPadding) {
  const test::Fixture f = load_fixture("isa");  // 9×11 with a 4×4 factor: padded to 12×12
  Isa block(IsaOptions(8).down_factor({4, 4}));
  block->eval();
  block->to(torch::kDouble);
  copy_weights(*block, f, isa_names());
  EXPECT_LT(max_relative_error(block->relation(f["x"]), f["y"]), 1e-12);
}

// Input pixels that influence output pixel (y, x) of `f` (eval mode: BN does not mix pixels).
at::Tensor support(const std::function<at::Tensor(const at::Tensor&)>& f, int64_t h, int64_t w, int64_t y, int64_t x) {
  const at::Tensor input = torch::randn({1, 8, h, w}, torch::requires_grad());
  f(input).select(2, y).select(2, x).sum().backward();
  return input.grad().abs().sum(1).squeeze(0) > 0;
}

TEST(Isa, TwoFactorisedPassesTogetherReachEveryPixel) {
  torch::manual_seed(0);
  Isa block(IsaOptions(8).down_factor({4, 3}));
  block->eval();
  const int64_t h = 12, w = 15, y = 6, x = 7;
  const at::Tensor far = support([&](const at::Tensor& t) {
    return functional::from_interlaced_groups(block->long_range(functional::interlaced_groups(t, 4, 3)), 1, 4, 3);
  }, h, w, y, x);
  const at::Tensor near = support([&](const at::Tensor& t) {
    return block->short_range(functional::local_groups(t, 4, 3)).reshape({1, 3, 5, 8, 4, 3}).permute({0, 3, 1, 4, 2, 5}).reshape({1, 8, h, w});
  }, h, w, y, x);
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      EXPECT_EQ(far[i][j].item<bool>(), i % 4 == y % 4 && j % 3 == x % 3) << i << "," << j;
      EXPECT_EQ(near[i][j].item<bool>(), i / 4 == y / 4 && j / 3 == x / 3) << i << "," << j;
    }
  }
  EXPECT_TRUE(support([&](const at::Tensor& t) { return block->relation(t); }, h, w, y, x).all().item<bool>());
  // Sizes that are not multiples of the factor are padded and cropped, not rejected.
  EXPECT_TRUE(support([&](const at::Tensor& t) { return block->relation(t); }, 13, 29, 5, 20).all().item<bool>());
}

TEST(Isa, MultiplyAddsMatchHandCount) {
  // C=16, d=8, 8×8 map, factor 4×4: gh=gw=2, N=64. Per pass projections 64·(2·(128+64)+2·256);
  // long range 64·4·24, short range 64·16·24.
  Isa block(IsaOptions(16).down_factor({4, 4}));
  EXPECT_EQ(block->macs({1, 16, 8, 8}), 2 * 64 * (2 * 192 + 512) + 64 * 4 * 24 + 64 * 16 * 24);
}

// --- autonl ------------------------------------------------------------------------------

TEST(AutoNL, LinearOrderEqualsQuadraticOrder) {
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const at::Tensor theta = torch::randn({2, 4, 9, 11}, opts), phi = torch::randn({2, 4, 5, 6}, opts),
                   g = torch::randn({2, 16, 5, 6}, opts);
  EXPECT_LT(max_relative_error(functional::light_nonlocal(theta, phi, g, true),
                               functional::light_nonlocal(theta, phi, g, false)),
            1e-12);
}

TEST(AutoNL, ChoosesTheCheaperOrderAsTheReferenceDoesAndStaysLinearInTokens) {
  LightNonLocal block(LightNonLocalOptions(64).reduction(4).stride(2));
  // C=64, D=16, stride 2. At 8×8 (N=64, n=16) both orders cost 81920 (quadratic 64·16·80,
  // linear 64·64·16 + 16·64·16); the reference takes the linear order unless the other is cheaper.
  EXPECT_TRUE(block->linear_order(8, 8));
  EXPECT_FALSE(block->linear_order(4, 4));  // N=16, n=4: 16·4·80 = 5120 < 16384 + 4096
  EXPECT_EQ(block->macs({1, 64, 4, 4}), 16 * 4 * 80 + 16 * 64 * 9);
  // Large maps: the linear order, N·C·D + n·C·D + the depthwise conv, linear in N.
  EXPECT_EQ(block->macs({1, 64, 32, 64}), 2048 * 64 * 16 + 512 * 64 * 16 + 2048 * 64 * 9);
  EXPECT_EQ(block->macs({1, 64, 64, 128}), 4 * block->macs({1, 64, 32, 64}));
}

TEST(AutoNL, UsesNoProjectionsOnlyTheDepthwiseTransform) {
  LightNonLocal block(LightNonLocalOptions(16));
  std::vector<std::string> names;
  for (const auto& p : block->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"depthwise.weight", "norm.weight", "norm.bias"}));
}

// --- scram -------------------------------------------------------------------------------

// Share of the exact top-k keys (brute force) that PatchMatch found, over all queries.
double topk_recall(const at::Tensor& q, const at::Tensor& k, const at::Tensor& found, int64_t topk) {
  const at::Tensor scores = at::bmm(q.flatten(2).transpose(1, 2), k.flatten(2));  // [B, N, N]
  const at::Tensor exact = std::get<1>(scores.topk(topk, -1));
  const at::Tensor hit = (exact.unsqueeze(-1) == found.unsqueeze(-2)).any(-1);
  return hit.to(at::kDouble).mean().item<double>();
}

// Spatially smooth queries and keys (the map of a segmentation network is): low-frequency
// random fields, so good matches of neighbouring pixels are neighbours.
at::Tensor smooth_field(int64_t d, int64_t h, int64_t w) {
  const at::Tensor coarse = torch::randn({1, d, 4, 5});
  return at::upsample_bilinear2d(coarse, {h, w}, /*align_corners=*/true) + 0.05 * torch::randn({1, d, h, w});
}

TEST(Scram, RecallOfTheExactTopKRisesWithPatchMatchIterations) {
  torch::manual_seed(0);
  const int64_t topk = 8;
  std::vector<double> recall(5, 0.0);
  for (int trial = 0; trial < 3; ++trial) {
    const at::Tensor q = smooth_field(6, 23, 31), k = smooth_field(6, 23, 31);
    for (int64_t it = 0; it <= 4; ++it) {
      recall[it] += topk_recall(q, k, functional::patchmatch_topk(q, k, topk, it, 100 + trial), topk) / 3;
    }
  }
  // Random initialisation alone would find 8/713 = 0.011.
  std::printf("recall for 0..4 iterations: %.3f %.3f %.3f %.3f %.3f\n", recall[0], recall[1], recall[2],
              recall[3], recall[4]);
  EXPECT_LT(recall[0], 0.05);
  for (int64_t it = 1; it <= 4; ++it) EXPECT_GT(recall[it], recall[it - 1]) << "iteration " << it;
  EXPECT_GT(recall[4], 0.85);
}

TEST(Scram, FoundKeysAreDistinctAndWhenTheyCoverTheMapItIsFullAttention) {
  torch::manual_seed(0);
  const at::Tensor q = torch::randn({2, 4, 5, 7}), k = torch::randn({2, 4, 5, 7}), v = torch::randn({2, 6, 5, 7});
  const at::Tensor idx = functional::patchmatch_topk(q, k, 35, 0, 3);  // k = N: the whole map
  EXPECT_TRUE(torch::equal(std::get<0>(idx.sort(-1)), torch::arange(35).expand({2, 35, 35})));
  EXPECT_LT(max_relative_error(functional::sparse_attention(q, k, v, idx),
                               functional::nonlocal_attention(q, k, v).to(torch::kDouble)),
            1e-5);
}

// The tensor form runs the kernel's algorithm, so on the same inputs its recall at each
// iteration count has the kernel's expectation and the two differ by their random streams only.
// One input's difference between them has a standard deviation of at most 0.014 (30 inputs as
// these, largest at 2 and 3 iterations), so the mean over 4 inputs stays within 0.03 (over 4 of
// its standard deviations, 0.007). Without propagation the tensor form loses 0.17 to 0.27 from
// 2 iterations on; without random search or without removing duplicates, more.
TEST(Scram, TensorSearchRecallRisesWithIterationsAndEqualsTheKernelsWithinRandomStreamNoise) {
  torch::manual_seed(0);
  const int64_t topk = 8, inputs = 4;
  std::vector<double> kernel(5, 0.0), tensor(5, 0.0);
  for (int trial = 0; trial < inputs; ++trial) {
    const at::Tensor q = smooth_field(6, 23, 31), k = smooth_field(6, 23, 31);
    const uint64_t seed = 200 + trial;
    for (int64_t it = 0; it <= 4; ++it) {
      kernel[it] += topk_recall(q, k, functional::patchmatch_topk(q, k, topk, it, seed), topk);
      tensor[it] += topk_recall(q, k, functional::patchmatch_topk_tensor(q, k, topk, it, seed), topk);
    }
  }
  for (int64_t it = 0; it <= 4; ++it) {
    kernel[it] /= inputs;
    tensor[it] /= inputs;
    std::printf("%ld iterations: recall kernel %.3f, tensor form %.3f\n", static_cast<long>(it),
                kernel[it], tensor[it]);
  }
  EXPECT_LT(tensor[0], 0.05);
  for (int64_t it = 1; it <= 4; ++it) EXPECT_GT(tensor[it], tensor[it - 1]) << "iteration " << it;
  for (int64_t it = 0; it <= 4; ++it)
    EXPECT_NEAR(tensor[it], kernel[it], 0.03) << "iteration " << it;
  EXPECT_GT(tensor[4], 0.85);
}

TEST(Scram, TensorSearchKeysAreDistinctBestFirstAndOnTheMapOnOddSizes) {
  torch::manual_seed(0);
  for (const auto& [h, w] : {std::pair<int64_t, int64_t>{7, 5}, {9, 11}}) {
    const int64_t n = h * w, topk = 6;
    const at::Tensor q = torch::randn({2, 3, h, w}), k = torch::randn({2, 3, h, w});
    const at::Tensor idx = functional::patchmatch_topk_tensor(q, k, topk, 3, 5);
    ASSERT_EQ(idx.scalar_type(), at::kLong);
    ASSERT_EQ(idx.sizes(), (at::IntArrayRef{2, n, topk}));
    EXPECT_GE(idx.min().item<int64_t>(), 0) << h << "x" << w;
    EXPECT_LT(idx.max().item<int64_t>(), n) << h << "x" << w;
    const at::Tensor sorted = std::get<0>(idx.sort(-1));
    EXPECT_FALSE(
        (sorted.narrow(-1, 1, topk - 1) == sorted.narrow(-1, 0, topk - 1)).any().item<bool>())
        << h << "x" << w << ": a key found twice";
    // Scores in float64 against the search's float: the order may differ by its rounding (1e-6).
    const at::Tensor scores = at::bmm(q.flatten(2).transpose(1, 2), k.flatten(2))
                                  .to(at::kDouble)
                                  .gather(2, idx);  // in the order found
    EXPECT_TRUE((scores.narrow(-1, 0, topk - 1) >= scores.narrow(-1, 1, topk - 1) - 1e-5)
                    .all()
                    .item<bool>())
        << h << "x" << w << ": not best first";
  }
}

// Keys of unit length in random directions, and each query equal to the key 2 rows down and 3
// columns right: a query's best key is exactly that one (q·k = 1, any other less), for the
// pixels whose key at that offset lies on the map, the first [h − 2, w − 3].
std::pair<at::Tensor, at::Tensor> offset_match(int64_t h, int64_t w) {
  at::Tensor k = torch::randn({1, 16, h, w});
  k = k / k.norm(2, 1, true);
  at::Tensor q = torch::zeros_like(k);
  q.narrow(2, 0, h - 2).narrow(3, 0, w - 3).copy_(k.narrow(2, 2, h - 2).narrow(3, 3, w - 3));
  return {q, k};
}

// [h − 2, w − 3, topk] of the search's keys for the pixels with a match: whether each is it.
at::Tensor is_match(const at::Tensor& idx, int64_t h, int64_t w) {
  const at::Tensor target = (at::arange(h).view({h, 1}) + 2) * w + at::arange(w).view({1, w}) + 3;
  return (idx[0].view({h, w, -1}) == target.unsqueeze(-1)).narrow(0, 0, h - 2).narrow(1, 0, w - 3);
}

// Iterations run in parallel, so one iteration's propagation hands a pixel exactly what its
// neighbours held before it: the first from the left and upper ones, the second from the right
// and lower ones. Every pixel whose neighbour on that side held the neighbour's own match then
// holds its match, best, after the step. The same seed draws the same initial candidates (and
// first iteration) whatever the iteration count, so the runs with 0, 1 and 2 iterations show
// each step's state. (Random search finds others too; only those handed over are asked for.)
TEST(Scram,
     TensorSearchPropagationHandsEachPixelItsLeftOrUpperNeighboursMatchThenItsRightOrLowerOnes) {
  torch::manual_seed(0);
  const int64_t h = 13, w = 15;
  const auto [q, k] = offset_match(h, w);
  at::Tensor held[3], best[3];
  for (int64_t it = 0; it <= 2; ++it) {
    const at::Tensor match =
        is_match(functional::patchmatch_topk_tensor(q, k, /*topk=*/12, it, /*seed=*/3), h, w);
    held[it] = match.any(-1);
    best[it] = match.select(-1, 0);
  }
  // out[p] = t[p + dir] along dim, false where p + dir is off the map.
  auto shifted = [](const at::Tensor& t, int64_t dim, int64_t dir) {
    const int64_t len = t.size(dim);
    at::Tensor out = at::zeros_like(t);
    out.narrow(dim, dir < 0 ? 1 : 0, len - 1).copy_(t.narrow(dim, dir < 0 ? 0 : 1, len - 1));
    return out;
  };
  const at::Tensor first = shifted(held[0], 1, -1) | shifted(held[0], 0, -1);
  const at::Tensor second = shifted(held[1], 1, 1) | shifted(held[1], 0, 1);
  std::printf(
      "pixels with a match %ld; holding it after 0, 1, 2 iterations: %ld, %ld, %ld; handed one: "
      "%ld, %ld\n",
      static_cast<long>(held[0].numel()), held[0].sum().item<long>(), held[1].sum().item<long>(),
      held[2].sum().item<long>(), first.sum().item<long>(), second.sum().item<long>());
  ASSERT_GE(first.sum().item<int64_t>(), 5);
  ASSERT_GE(second.sum().item<int64_t>(), 5);
  EXPECT_TRUE(best[1].masked_select(first).all().item<bool>())
      << "a match from the left or above not taken";
  EXPECT_TRUE(best[2].masked_select(second).all().item<bool>())
      << "a match from the right or below not taken";
}

// From the few matches found at random, propagation carries each a pixel further every
// iteration: after 8, most pixels hold theirs. Random search alone would find at most about
// 1 − (1 − 1/N)^(k·radii·iterations) = 17% (4 keys, 6 radii, N = 31·33), and the initial
// candidates 4/N.
TEST(Scram, TensorSearchPropagationSpreadsAConstantOffsetMatchToMostPixels) {
  torch::manual_seed(0);
  const int64_t h = 31, w = 33;
  double found[2] = {0, 0};
  for (int seed = 0; seed < 3; ++seed) {
    const auto [q, k] = offset_match(h, w);
    for (int64_t i = 0; i < 2; ++i) {
      const at::Tensor idx =
          functional::patchmatch_topk_tensor(q, k, /*topk=*/4, /*iterations=*/8 * i, seed);
      found[i] += is_match(idx, h, w).select(-1, 0).to(at::kDouble).mean().item<double>() / 3;
    }
  }
  std::printf("share of pixels holding their match after 0 and 8 iterations: %.3f, %.3f\n",
              found[0], found[1]);
  EXPECT_LT(found[0], 0.02);
  EXPECT_GT(found[1], 0.7);
}

TEST(Scram, TensorSearchWithTopkAtLeastNReturnsEveryKeySoItIsFullAttention) {
  torch::manual_seed(0);
  const at::Tensor q = torch::randn({2, 4, 5, 7}), k = torch::randn({2, 4, 5, 7}),
                   v = torch::randn({2, 6, 5, 7});
  for (const int64_t topk : {35, 40}) {
    for (const int64_t iterations : {0, 2}) {
      const at::Tensor idx = functional::patchmatch_topk_tensor(q, k, topk, iterations, 3);
      ASSERT_EQ(idx.sizes(), (at::IntArrayRef{2, 35, 35})) << "topk " << topk;
      EXPECT_TRUE(torch::equal(std::get<0>(idx.sort(-1)), torch::arange(35).expand({2, 35, 35})))
          << "topk " << topk << ", " << iterations << " iterations";
      EXPECT_LT(max_relative_error(functional::sparse_attention(q, k, v, idx),
                                   functional::nonlocal_attention(q, k, v).to(torch::kDouble)),
                1e-5);
    }
  }
}

// The CPU kernel (one pass per query, its own backward) against the same attention built from
// gathers and differentiated by autograd, in float64 on odd sizes, two samples, keys shared
// between queries (so the backward's scatters must add up).
TEST(Scram, KernelAndItsBackwardEqualTheGatheredForm) {
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const at::Tensor q0 = torch::randn({2, 5, 7, 9}, opts), k0 = torch::randn({2, 5, 7, 9}, opts),
                   v0 = torch::randn({2, 6, 7, 9}, opts), g = torch::randn({2, 6, 7, 9}, opts);
  const at::Tensor idx = torch::randint(0, 63, {2, 63, 5}, torch::kLong);
  std::vector<at::Tensor> grads[2];
  at::Tensor outs[2];
  for (int form = 0; form < 2; ++form) {
    const at::Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_(), v = v0.clone().requires_grad_();
    outs[form] = form == 0 ? functional::sparse_attention(q, k, v, idx) : functional::sparse_attention_gathered(q, k, v, idx);
    (outs[form] * g).sum().backward();
    grads[form] = {q.grad(), k.grad(), v.grad()};
  }
  EXPECT_LT(max_relative_error(outs[0], outs[1].detach()), 1e-12);
  for (int i = 0; i < 3; ++i) EXPECT_LT(max_relative_error(grads[0][i], grads[1][i]), 1e-12) << "input " << i;
  EXPECT_THROW(functional::sparse_attention(q0, k0, v0, idx + 1), c10::Error);  // 63 is out of range
}

TEST(Scram, GradientReachesQueriesKeysAndValuesThroughTheFoundKeys) {
  torch::manual_seed(0);
  Scram block(ScramOptions(16).topk(4).reduction(4).zero_init(false));
  const at::Tensor x = torch::randn({1, 16, 9, 11}, torch::requires_grad());
  block->forward(x).sum().backward();
  for (const auto& p : block->named_parameters()) EXPECT_GT(p.value().grad().abs().sum().item<float>(), 0) << p.key();
}

TEST(Scram, MultiplyAddsCountTheSearchAndTheSparseAttention) {
  // C=16, d=2, 8×8 map, k=4, 2 iterations: radii 8,4,2,1 → 4 + 2·(8 + 16) = 52 evaluations.
  Scram block(ScramOptions(16).topk(4).iterations(2));
  EXPECT_EQ(patchmatch_evaluations(8, 8, 4, 2), 52);
  EXPECT_EQ(block->macs({1, 16, 8, 8}), 64 * 16 * (4 + 16) + 64 * 52 * 2 + 64 * 4 * (2 + 16));
}

// --- fast_l2 -----------------------------------------------------------------------------

TEST(FastL2, LinearOrderEqualsQuadraticOrder) {
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const at::Tensor q = torch::randn({2, 5, 9, 11}, opts), k = torch::randn({2, 5, 9, 11}, opts),
                   v = torch::randn({2, 7, 9, 11}, opts);
  const int64_t n = 99;
  const at::Tensor qn = torch::nn::functional::normalize(q.flatten(2), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const at::Tensor kn = torch::nn::functional::normalize(k.flatten(2), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const at::Tensor a = at::bmm(qn.transpose(1, 2), kn) / static_cast<double>(n);  // [B, N, N]
  const at::Tensor quadratic = at::bmm(v.flatten(2), a.transpose(1, 2)).reshape(v.sizes());
  EXPECT_LT(max_relative_error(functional::fast_l2_attention(q, k, v), quadratic), 1e-12);
}

TEST(FastL2, MultiplyAddsAreLinearInTokens) {
  // C=32, d=16: per token 32·(2·16 + 2·32) projections + 2·16·32 products.
  FastL2 block(FastL2Options(32));
  EXPECT_EQ(block->macs({1, 32, 5, 7}), 35 * (32 * 96 + 2 * 16 * 32));
  EXPECT_EQ(block->macs({1, 32, 10, 14}), 4 * block->macs({1, 32, 5, 7}));
}

}  // namespace
}  // namespace attnseg
