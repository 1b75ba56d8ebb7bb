// Every registered block trains inside the full model on the synthetic dataset: a few
// iterations of the real trainer with the CPU config's block options, every logged loss
// finite, a checkpoint written and evaluated.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "attention/registry.h"
#include "config/config.h"
#include "data/synthetic.h"
#include "engine_util.h"
#include "test_util.h"

namespace attnseg {
namespace {

using test::TempDir;
using test::tiny_config;
using test::write_file;

class BlockTraining : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    write_synthetic_dataset(data_->path(), {8, 2, 32, 0});
  }
  static void TearDownTestSuite() { delete data_; }
  static TempDir* data_;
};
TempDir* BlockTraining::data_ = nullptr;

TEST_P(BlockTraining, TrainsWithFiniteLossesAndEvaluates) {
  const TempDir dir;
  write_file(dir / "tiny.yaml", tiny_config(data_->path(), GetParam()));
  const Config config = Config::load(dir / "tiny.yaml", {"train.iters=6"});
  const TrainResult r = test::train_config(config, dir / "work", /*resume=*/false);
  EXPECT_EQ(r.iterations, 6);
  std::ifstream metrics(dir / "work" / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line); ++lines) {
    EXPECT_TRUE(std::isfinite(nlohmann::json::parse(line)["loss"].get<double>())) << line;
  }
  EXPECT_EQ(lines, 6);
  const EvalResult e = test::evaluate_config(config, r.checkpoint);
  EXPECT_TRUE(std::isfinite(e.metrics.miou));
}

INSTANTIATE_TEST_SUITE_P(Registry, BlockTraining, ::testing::ValuesIn(block_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace attnseg
