// The live demo's window-free parts: the newest-value hand-off between its threads and the
// influence map of a clicked pixel.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <chrono>
#include <thread>
#include <vector>

#include "config/config.h"
#include "engine/demo.h"
#include "engine/experiment.h"
#include "test_util.h"

namespace attnseg {
namespace {

TEST(LatestSlot, TheNewestValueWinsAndReplacedOnesAreCounted) {
  LatestSlot<int> slot;
  slot.put(1);
  slot.put(2);
  slot.put(3);
  EXPECT_EQ(slot.take(), 3);
  EXPECT_EQ(slot.dropped(), 2);
  slot.put(4);
  slot.close();
  EXPECT_EQ(slot.take(), 4);  // a value put before close() is still delivered
  EXPECT_EQ(slot.take(), std::nullopt);
}

TEST(LatestSlot, ASlowConsumerGetsTheLatestFramesNotAQueue) {
  LatestSlot<int> slot;
  std::vector<int> taken;
  std::thread consumer([&] {
    while (auto v = slot.take()) {
      taken.push_back(*v);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // inference slower than the source
    }
  });
  for (int i = 0; i < 100; ++i) {
    slot.put(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  slot.close();
  consumer.join();
  ASSERT_FALSE(taken.empty());
  EXPECT_EQ(taken.back(), 99);  // the last frame is shown, however many were dropped before it
  for (size_t i = 1; i < taken.size(); ++i) EXPECT_LT(taken[i - 1], taken[i]);
  EXPECT_LT(taken.size(), 50u);
  EXPECT_EQ(static_cast<int64_t>(taken.size()) + slot.dropped(), 100);
}

Segmentor model_with(const std::string& overrides_yaml, const test::TempDir& dir) {
  const auto file = dir / "model.yaml";
  test::write_file(file, test::tiny_config(dir.path(), "ccnet") + overrides_yaml);
  at::manual_seed(0);
  return read_experiment(Config::load(file)).model;
}

// Influence on a 4x24 feature map (32x192 image at output stride 8), pixel (1, 5).
at::Tensor influence(const std::string& attention_yaml) {
  test::TempDir dir;
  Segmentor model = model_with(attention_yaml, dir);
  at::manual_seed(1);
  const at::Tensor image = at::randn({1, 3, 32, 192});
  const at::Tensor map = block_influence(model, image, 1, 5);
  EXPECT_EQ(map.sizes(), (at::IntArrayRef{4, 24}));
  EXPECT_NEAR(map.max().item<double>(), 1.0, 1e-6);
  return map;
}

TEST(Influence, OneCrissCrossPassReachesOnlyTheRowAndColumnOfTheClick) {
  const at::Tensor map = influence("model: {attention: {type: ccnet, ccnet: {recurrence: 1}}}\n");
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t c = 0; c < 24; ++c) {
      const double v = map[r][c].item<double>();
      if (r == 1 || c == 5) continue;
      EXPECT_EQ(v, 0.0) << "(" << r << ", " << c << ") is off the criss-cross";
    }
  }
  EXPECT_GT(map[1][20].item<double>(), 0.0);  // far along the row
  EXPECT_GT(map[3][5].item<double>(), 0.0);   // along the column
}

TEST(Influence, TwoPassesAndNonlocalReachEveryPixel) {
  for (const std::string yaml : {"model: {attention: {type: ccnet, ccnet: {recurrence: 2}}}\n",
                                 "model: {attention: {type: nonlocal}}\n"}) {
    const at::Tensor map = influence(yaml);
    EXPECT_GT(map.min().item<double>(), 0.0) << yaml;
  }
}

TEST(Influence, TheIdentityBlockReachesOnlyTheClickedPixel) {
  const at::Tensor map = influence("model: {attention: {type: none}}\n");
  EXPECT_EQ(map.sum().item<double>(), 1.0);
  EXPECT_EQ(map[1][5].item<double>(), 1.0);
}

}  // namespace
}  // namespace attnseg
