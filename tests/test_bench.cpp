// The block benchmark's arithmetic and input checks (timings themselves are never asserted).
#include <gtest/gtest.h>

#include <cmath>

#include "attention/registry.h"
#include "core/error.h"
#include "engine/bench.h"
#include "engine/timing.h"

namespace attnseg {
namespace {

TEST(Bench, GrowthExponentRecoversThePowerLaw) {
  std::vector<double> n{2048, 8192, 32768}, t;
  for (double v : n) t.push_back(3e-6 * std::pow(v, 1.5));
  EXPECT_NEAR(growth_exponent(n, t), 1.5, 1e-12);
  // Two sizes: the exponent is the slope between them.
  EXPECT_NEAR(growth_exponent({2048, 8192}, {10.0, 40.0}), 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(growth_exponent({2048}, {10.0})));
}

TEST(Bench, PercentileInterpolatesBetweenOrderStatistics) {
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0.25), 1.75);
  EXPECT_DOUBLE_EQ(percentile({7}, 0.75), 7);
}

TEST(Bench, SizesParseAndBadOnesAreNamed) {
  const auto sizes = parse_sizes("32x64,7x9");
  ASSERT_EQ(sizes.size(), 2u);
  EXPECT_EQ(sizes[1][0], 7);
  EXPECT_EQ(sizes[1][1], 9);
  for (const std::string bad : {"32", "32x", "0x4", "32x64x2", "axb", "32x-4", ""}) {
    try {
      parse_sizes(bad);
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--sizes"), std::string::npos) << e.what();
    }
  }
}

TEST(Bench, BlockListsAreCheckedAgainstTheRegistry) {
  EXPECT_EQ(parse_block_list("all"), block_names());
  EXPECT_EQ(parse_block_list("ccnet,none"), (std::vector<std::string>{"ccnet", "none"}));
  EXPECT_THROW(parse_block_list("ccnet,nonlokal"), Error);
  EXPECT_THROW(parse_block_list(","), Error);
}

TEST(Bench, ReportsEachBlocksOwnMultiplyAddsAtEverySize) {
  BenchSettings s;
  s.blocks = {"nonlocal", "ccnet"};
  s.sizes = {{5, 7}, {9, 11}};
  s.channels = 16;
  s.warmup = 0;
  s.iters = 2;
  s.threads = 1;
  const BenchReport report = bench_blocks(s);
  ASSERT_EQ(report.blocks.size(), 2u);
  for (const auto& b : report.blocks) {
    const AttentionBlock block = build_block(b.block, 16);
    EXPECT_EQ(b.parameters, count_parameters(*block));
    ASSERT_EQ(b.sizes.size(), 2u);
    EXPECT_EQ(b.sizes[1].macs, block->macs({1, 16, 9, 11}));
    EXPECT_GT(b.sizes[0].median_ms, 0);
    EXPECT_LE(b.sizes[0].p25_ms, b.sizes[0].p75_ms);
  }
}

}  // namespace
}  // namespace attnseg
