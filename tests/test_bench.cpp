// The block benchmark's arithmetic and input checks (timings themselves are never asserted).
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include "attention/registry.h"
#include "common.h"
#include "core/error.h"
#include "engine/bench.h"
#include "engine/counters.h"
#include "engine/experiment.h"
#include "config/config.h"
#include "core/device.h"
#include "engine/timing.h"

namespace attnseg {
namespace {

using app::parse_block_list;
using app::parse_sizes;

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

// Small, single-threaded settings: these tests check what is reported, not how fast.
BenchSettings tiny(std::vector<std::string> blocks, std::vector<std::array<int64_t, 2>> sizes) {
  BenchSettings s;
  s.blocks = std::move(blocks);
  s.sizes = std::move(sizes);
  s.channels = 16;
  s.warmup = 0;
  s.iters = 2;
  return s;
}

// One CPU thread, fp32.
Runtime one_thread() {
  RuntimeSettings settings;
  settings.device = "cpu";
  settings.threads = 1;
  return start_runtime(settings);
}

TEST(Bench, ReportsEachBlocksOwnMultiplyAddsAtEverySize) {
  const BenchSettings s = tiny({"nonlocal", "ccnet"}, {{5, 7}, {9, 11}});
  const BenchReport report = bench_blocks(s, one_thread());
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

// --set routing.local_heads=0 reaches routing alone: its parameters and products are those of
// routing built with no local heads (fewer products than the default), linear's stay its defaults.
TEST(Bench, SetOptionsReachOnlyTheBlockTheyNameAndBadOnesAreNamed) {
  BenchSettings s = tiny({"routing", "linear"}, {{9, 11}});
  s.block_options = {"routing.local_heads=0", "routing.clusters=4"};
  const BenchReport report = bench_blocks(s, one_thread());
  ASSERT_EQ(report.blocks.size(), 2u);
  const Config set = Config::from_string("{type: routing, routing: {local_heads: 0, clusters: 4}}", "test");
  const AttentionBlock routing = configure_block(set.root(), 16).build();
  EXPECT_EQ(report.blocks[0].sizes[0].macs, routing->macs({1, 16, 9, 11}));
  EXPECT_NE(report.blocks[0].sizes[0].macs, build_block("routing", 16)->macs({1, 16, 9, 11}));
  EXPECT_EQ(report.blocks[1].sizes[0].macs, build_block("linear", 16)->macs({1, 16, 9, 11}));
  for (const auto& [option, named] : std::vector<std::pair<std::string, std::string>>{
           {"longformer.window=3", "longformer"},  // not among --blocks
           {"routing.no_such_key=1", "no_such_key"},
           {"routing.local_heads=9", "local_heads"},
           {"routing=1", "block.key=value"}}) {
    s.block_options = {option};
    try {
      bench_blocks(s, one_thread());
      ADD_FAILURE() << option << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(named), std::string::npos) << option << ": " << e.what();
    }
  }
}

TEST(Bench, ThroughputFollowsTheMedianAndBackwardIsTimedOnlyWhenAsked) {
  BenchSettings s = tiny({"ccnet", "scram"}, {{5, 7}});
  s.batch = 3;
  for (const auto& b : bench_blocks(s, one_thread()).blocks) {
    EXPECT_EQ(b.sizes[0].train_median_ms, 0) << b.block;
    EXPECT_DOUBLE_EQ(b.sizes[0].images_per_s, 3000.0 / b.sizes[0].median_ms) << b.block;
  }
  s.backward = true;
  const BenchReport report = bench_blocks(s, one_thread());
  for (const auto& b : report.blocks) {
    EXPECT_GT(b.sizes[0].train_median_ms, 0) << b.block;
    EXPECT_LE(b.sizes[0].train_p25_ms, b.sizes[0].train_p75_ms) << b.block;
  }
  EXPECT_NE(format_bench(report).find("fwd+bwd ms"), std::string::npos);
  EXPECT_TRUE(bench_json(report)["blocks"][0]["sizes"][0].contains("train_median_ms"));
}

// The ERF column: measured for every block alone by default, left out (no column, NaN) with
// --no-erf.
TEST(Bench, EffectiveReceptiveFieldIsMeasuredUnlessLeftOut) {
  BenchSettings s = tiny({"none", "ccnet"}, {{5, 7}});
  BenchReport report = bench_blocks(s, one_thread());
  for (const auto& b : report.blocks) EXPECT_FALSE(std::isnan(b.erf)) << b.block;
  EXPECT_NE(format_bench(report).find("ERF % at 5x7"), std::string::npos);
  s.erf = false;
  report = bench_blocks(s, one_thread());
  for (const auto& b : report.blocks) EXPECT_TRUE(std::isnan(b.erf)) << b.block;
  EXPECT_EQ(format_bench(report).find("ERF"), std::string::npos);
}

// A block alone is fed what a model hands it: under bf16 autocast the head's reduce convolution
// (conv, BatchNorm, ReLU) passes the block a bf16 map, so the bench's block input is bf16 too;
// in fp32 both are float, and a model takes float images in any precision.
TEST(Bench, ABlockAloneIsFedInTheTypeAModelUnderAutocastHandsIt) {
  const Experiment x = read_experiment(Config::load(std::string(ATTNSEG_SOURCE_DIR) + "/configs/ccnet_r18_synthetic.yaml"));
  for (const Precision precision : {Precision::fp32, Precision::bf16}) {
    Runtime runtime = one_thread();
    runtime.precision = precision;
    Segmentor model = build_model(x, runtime);
    model->eval();
    at::Tensor handed;
    {
      c10::InferenceMode guard;
      AutocastGuard autocast(runtime);
      handed = model->predict_with_block_input(at::randn({1, 3, 32, 48})).block_input;
    }
    const BenchSubject block = block_subject("ccnet", model->head()->block(), handed.size(1));
    const at::Tensor fed = random_input(block, 1, {5, 7}, runtime);
    EXPECT_EQ(fed.scalar_type(), handed.scalar_type()) << precision_name(precision);
    EXPECT_EQ(fed.sizes(), (std::vector<int64_t>{1, handed.size(1), 5, 7}));
    EXPECT_EQ(random_input(model_subject("model", model), 1, {5, 7}, runtime).scalar_type(), at::kFloat);
  }
}

// The floor: the larger of the two terms, each at its ceiling; bytes in the precision's width.
TEST(BenchFloor, IsTheLargerOfArithmeticAtTheMatrixRateAndBytesAtTheCopyRate) {
  Ceilings c;
  c.matrix_flops_per_s = 1e12;
  c.copy_bytes_per_s = 1e11;
  const Floor arithmetic = floor_of(1'000'000'000, 100'000'000, c);  // 2 ms of products, 1 ms of bytes
  EXPECT_DOUBLE_EQ(arithmetic.ms, 2.0);
  EXPECT_FALSE(arithmetic.memory_bound);
  const Floor memory = floor_of(1'000'000'000, 1'000'000'000, c);  // 2 ms of products, 10 ms of bytes
  EXPECT_DOUBLE_EQ(memory.ms, 10.0);
  EXPECT_TRUE(memory.memory_bound);
  EXPECT_EQ(minimum_bytes(10, 20, 3, Precision::fp32), 4 * 33);
  EXPECT_EQ(minimum_bytes(10, 20, 3, Precision::bf16), 2 * 33);
  EXPECT_EQ(minimum_bytes(10, 20, 3, Precision::fp16), 2 * 33);
}

// With --floor the device's ceilings are measured once, in the precision, and every size gets
// the floor of its own multiply-adds and of its input, output and weights moved once; without
// it nothing of the floor is measured or printed, and the CSV keeps its columns.
TEST(Bench, FloorCountsInputOutputAndWeightsOnceAtTheMeasuredCeilings) {
  BenchSettings s = tiny({"none", "ccnet"}, {{5, 7}, {6, 9}});
  s.erf = false;
  s.floor = true;
  for (const Precision precision : {Precision::fp32, Precision::bf16}) {
    Runtime runtime = one_thread();
    runtime.precision = precision;
    const BenchReport report = bench_blocks(s, runtime);
    const Ceilings& c = report.ceilings;
    EXPECT_TRUE(std::isfinite(c.matrix_flops_per_s) && c.matrix_flops_per_s > 0) << c.matrix_flops_per_s;
    EXPECT_TRUE(std::isfinite(c.copy_bytes_per_s) && c.copy_bytes_per_s > 0) << c.copy_bytes_per_s;
    EXPECT_GE(c.matrix_n, 256);
    EXPECT_LE(c.matrix_n, 8192);
    EXPECT_EQ(c.copy_bytes, int64_t{256} << 20);
    const int64_t width = precision == Precision::fp32 ? 4 : 2;
    const nlohmann::json json = bench_json(report);
    ASSERT_TRUE(json.contains("ceilings"));
    for (size_t i = 0; i < report.blocks.size(); ++i) {
      const BlockResult& b = report.blocks[i];
      for (size_t k = 0; k < b.sizes.size(); ++k) {
        const SizeResult& z = b.sizes[k];
        const auto& entry = json["blocks"][i]["sizes"][k];
        if (b.block == "none") {  // returns its input: nothing computed, read or written
          EXPECT_EQ(z.min_bytes, 0);
          EXPECT_EQ(z.floor.ms, 0);
          EXPECT_TRUE(entry["floor_ratio"].is_null()) << entry;
          continue;
        }
        const int64_t elements = 16 * z.size[0] * z.size[1];  // [1, 16, H, W] in and out
        EXPECT_EQ(z.min_bytes, width * (2 * elements + b.parameters)) << b.block;
        EXPECT_DOUBLE_EQ(z.floor.ms, floor_of(z.macs, z.min_bytes, c).ms) << b.block;
        EXPECT_GT(z.floor.ms, 0) << b.block;
        EXPECT_DOUBLE_EQ(entry["floor_ratio"].get<double>(), z.median_ms / z.floor.ms) << b.block;
        EXPECT_EQ(entry["floor_bound"], z.floor.memory_bound ? "memory" : "arithmetic") << b.block;
      }
    }
    const std::string table = format_bench(report);
    EXPECT_NE(table.find("x floor"), std::string::npos) << table;
    EXPECT_TRUE(c.matrix_how == "product" || c.matrix_how == "1x1 convolution") << c.matrix_how;
    EXPECT_NE(table.find("n=" + std::to_string(c.matrix_n) + " " + precision_name(precision) + " " + c.matrix_how),
              std::string::npos)
        << table;
    const std::string csv = bench_csv(report);
    EXPECT_NE(csv.substr(0, csv.find('\n')).find(",erf,min_bytes,floor_ms,floor_ratio,floor_bound"), std::string::npos)
        << csv;
  }
  s.floor = false;
  const BenchReport report = bench_blocks(s, one_thread());
  EXPECT_EQ(report.ceilings.matrix_flops_per_s, 0);
  EXPECT_EQ(report.blocks[1].sizes[0].floor.ms, 0);
  EXPECT_EQ(format_bench(report).find("floor"), std::string::npos);
  EXPECT_FALSE(bench_json(report).contains("ceilings"));
  const std::string csv = bench_csv(report);
  EXPECT_EQ(csv.substr(0, csv.find('\n')).find("floor"), std::string::npos) << csv;
}

TEST(Bench, CsvHasOneRowPerBlockAndSizeWithEveryColumnFilled) {
  BenchSettings s = tiny({"none", "ccnet"}, {{5, 7}, {6, 9}});
  s.backward = true;
  std::stringstream csv(bench_csv(bench_blocks(s, one_thread())));
  std::string header, line;
  std::getline(csv, header);
  const auto fields = [](const std::string& text) {
    std::vector<std::string> out;
    std::stringstream stream(text);
    std::string field;
    while (std::getline(stream, field, ',')) out.push_back(field);
    if (!text.empty() && text.back() == ',') out.emplace_back();
    return out;
  };
  const auto names = fields(header);
  ASSERT_EQ(names.front(), "block");
  std::vector<std::string> rows;
  while (std::getline(csv, line)) rows.push_back(line);
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& row : rows) {
    const auto values = fields(row);
    ASSERT_EQ(values.size(), names.size()) << row;
    for (size_t i = 0; i < values.size(); ++i) {
      // The identity allocates nothing, so no memory growth can be fitted for it.
      if (values[0] == "none" && names[i] == "memory_exponent") {
        EXPECT_TRUE(values[i].empty()) << row;
        EXPECT_EQ(values[12], "0") << names[12] << " in " << row;
        continue;
      }
      EXPECT_FALSE(values[i].empty()) << names[i] << " in " << row;
    }
  }
  EXPECT_EQ(fields(rows[3])[0], "ccnet");
  EXPECT_EQ(fields(rows[3])[6], "54");  // tokens of 6x9
}

TEST(Counters, PeakMemoryIsTheHighestSumHeldInTheScope) {
  at::Tensor before = at::empty({1000});
  PeakMemory memory;
  at::Tensor a = at::empty({1 << 18});  // 1 MiB of floats
  a.reset();
  before.reset();  // allocated before the scope: its free must not lower the sum
  const at::Tensor b = at::empty({1 << 17}), c = at::empty({1 << 16});
  EXPECT_EQ(memory.peak_bytes(), 1 << 20);
  EXPECT_EQ(memory.current_bytes(), (1 << 19) + (1 << 18));
}

TEST(Counters, MultiplyAddsOfConvolutionsAndProductsMatchHandCounts) {
  c10::InferenceMode guard;
  auto count = [](const std::function<void()>& run) {
    MacCounter counter;
    run();
    return counter.macs();
  };
  // 17x23 at stride 2, padding 1, 3x3 kernel: 9x12 outputs, each 3·3·3 multiply-adds, 5 filters, batch 2.
  EXPECT_EQ(count([] { at::conv2d(at::randn({2, 3, 17, 23}), at::randn({5, 3, 3, 3}), {}, 2, 1); }),
            2 * 5 * 9 * 12 * 3 * 9);
  // Two groups of 2 input channels, 1x1 kernel, 6 filters.
  EXPECT_EQ(count([] { at::conv2d(at::randn({1, 4, 7, 9}), at::randn({6, 2, 1, 1}), at::Tensor(), at::IntArrayRef{1}, at::IntArrayRef{0}, at::IntArrayRef{1}, 2); }),
            6 * 7 * 9 * 2);
  EXPECT_EQ(count([] { at::mm(at::randn({7, 11}), at::randn({11, 13})); }), 7 * 11 * 13);
  EXPECT_EQ(count([] { at::matmul(at::randn({3, 7, 11}), at::randn({3, 11, 13})); }), 3 * 7 * 11 * 13);
  EXPECT_EQ(count([] { at::linear(at::randn({5, 11}), at::randn({13, 11}), at::randn({13})); }), 5 * 11 * 13);
  EXPECT_EQ(count([] { at::softmax(at::randn({7, 11}) + 1, 1); }), 0);
}

TEST(Counters, ExecutedMultiplyAddsEqualTheAnalyticCountOfNonlocalAndCcnet) {
  c10::InferenceMode guard;
  for (const std::string name : {"nonlocal", "ccnet"}) {
    const AttentionBlock block = build_block(name, 16);
    block->eval();
    const at::Tensor x = at::randn({2, 16, 7, 9});
    MacCounter counter;
    (void)block->forward(x);
    EXPECT_EQ(counter.macs(), block->macs({2, 16, 7, 9})) << name;
  }
}

TEST(Bench, PeakMemoryHoldsTheNonlocalAttentionMapAndGrowsQuadratically) {
  BenchSettings s = tiny({"nonlocal", "ccnet"}, {{7, 9}, {14, 18}, {28, 36}});
  s.batch = 2;
  const BenchReport report = bench_blocks(s, one_thread());
  const BlockResult& nonlocal = report.blocks[0];
  const BlockResult& ccnet = report.blocks[1];
  for (const auto& z : nonlocal.sizes) {
    const int64_t n = z.size[0] * z.size[1];
    EXPECT_GE(z.peak_bytes, s.batch * n * n * 4) << z.size[0] << "x" << z.size[1];  // the float N×N map
  }
  EXPECT_GT(nonlocal.memory_exponent, 1.7);
  // Criss-cross attention keeps N·(H+W−1) affinities: N^1.5 for a fixed aspect ratio.
  EXPECT_LT(ccnet.memory_exponent, 1.6);
  EXPECT_GT(ccnet.memory_exponent, 0.9);
}

}  // namespace
}  // namespace attnseg
