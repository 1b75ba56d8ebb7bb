// Checkpoints (round trip, wrong model, corrupt file), resume reproducing an uninterrupted
// run, and a NaN loss stopping training with the last good checkpoint kept.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "data/synthetic.h"
#include "engine/checkpoint.h"
#include "engine/evaluator.h"
#include "engine/experiment.h"
#include "engine/trainer.h"
#include "test_util.h"

namespace attnseg {
namespace {

using test::TempDir;
using test::tiny_config;
using test::write_file;
namespace fs = std::filesystem;

std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    write_synthetic_dataset(data_->path(), {12, 3, 32, 0});
  }
  static void TearDownTestSuite() { delete data_; }
  Config config(const std::vector<std::string>& overrides = {}) {
    write_file(dir / "tiny.yaml", tiny_config(data_->path()));
    return Config::load(dir / "tiny.yaml", overrides);
  }
  Experiment tiny_experiment(const std::string& block = "ccnet") {
    write_file(dir / (block + ".yaml"), tiny_config(data_->path(), block));
    return read_experiment(Config::load(dir / (block + ".yaml")));
  }
  static TempDir* data_;
  TempDir dir;
};
TempDir* EngineTest::data_ = nullptr;

TEST_F(EngineTest, CheckpointRoundTripRestoresModelAndOptimizer) {
  Experiment a = tiny_experiment();
  torch::optim::SGD opt(a.model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  a.model->train();
  const at::Tensor x = torch::randn({2, 3, 48, 40});
  const at::Tensor y = torch::randint(0, 6, {2, 48, 40});
  a.model->loss(a.model->forward(x), y).total.backward();
  opt.step();
  save_checkpoint(dir / "a.pt", a.model, &opt, {17, "yaml: here"});
  EXPECT_FALSE(fs::exists(dir / "a.pt.tmp"));

  torch::manual_seed(123);  // a differently initialised twin
  Experiment b = tiny_experiment();
  torch::optim::SGD opt_b(b.model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  const CheckpointInfo info = load_checkpoint(dir / "a.pt", b.model, &opt_b);
  EXPECT_EQ(info.iteration, 17);
  EXPECT_EQ(info.config_yaml, "yaml: here");
  a.model->eval();
  b.model->eval();
  EXPECT_TRUE(torch::equal(a.model->predict(x), b.model->predict(x)));
  // momentum buffers came back: one more identical step keeps the twins identical
  a.model->train();
  b.model->train();
  opt.zero_grad();
  opt_b.zero_grad();
  torch::manual_seed(5);
  a.model->loss(a.model->forward(x), y).total.backward();
  torch::manual_seed(5);
  b.model->loss(b.model->forward(x), y).total.backward();
  opt.step();
  opt_b.step();
  for (size_t i = 0; i < a.model->parameters().size(); ++i) {
    EXPECT_TRUE(torch::allclose(a.model->parameters()[i], b.model->parameters()[i])) << i;
  }
}

TEST_F(EngineTest, CheckpointOfAnotherModelIsRefusedByName) {
  Experiment ccnet = tiny_experiment("ccnet");
  save_checkpoint(dir / "ccnet.pt", ccnet.model, nullptr, {1, ""});
  Experiment none = tiny_experiment("none");
  try {
    load_checkpoint(dir / "ccnet.pt", none.model);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("ccnet.pt was written for another model"), std::string::npos) << m;
  }
}

TEST_F(EngineTest, CorruptOrMissingCheckpointIsNamed) {
  Experiment x = tiny_experiment();
  write_file(dir / "junk.pt", "definitely not a zip archive");
  EXPECT_THROW(
      {
        try {
          load_checkpoint(dir / "junk.pt", x.model);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("junk.pt"), std::string::npos);
          throw;
        }
      },
      Error);
  EXPECT_THROW(load_checkpoint(dir / "absent.pt", x.model), Error);
}

TEST_F(EngineTest, ResumeReproducesTheUninterruptedLossCurve) {
  const Config c = config({"train.iters=6", "train.checkpoint_interval=3", "train.keep_checkpoints=3"});
  train(c, dir / "full", false);
  const std::vector<double> full = losses(dir / "full/metrics.jsonl");
  ASSERT_EQ(full.size(), 6u);

  // A run killed after its checkpoint at iteration 3: the checkpoint and nothing after it.
  fs::create_directories(dir / "cut");
  fs::copy_file(dir / "full/iter_3.pt", dir / "cut/iter_3.pt");
  write_file(dir / "cut/last_checkpoint", "iter_3.pt\n");
  const TrainResult r = train(c, dir / "cut", /*resume=*/true);
  EXPECT_EQ(r.iterations, 6);
  const std::vector<double> resumed = losses(dir / "cut/metrics.jsonl");
  ASSERT_EQ(resumed.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(resumed[i], full[i + 3]) << "iteration " << i + 4;
}

TEST_F(EngineTest, NaNLossStopsAndKeepsTheLastGoodCheckpoint) {
  // Two sane iterations, then the same run resumed with a learning rate that must diverge.
  train(config({"train.iters=2", "train.checkpoint_interval=1"}), dir / "nan", false);
  const Config c = config({"train.iters=30", "train.lr=1e12", "train.warmup_iters=0",
                           "train.checkpoint_interval=1", "train.keep_checkpoints=2"});
  std::string message;
  try {
    train(c, dir / "nan", /*resume=*/true);
  } catch (const Error& e) {
    message = e.what();
  }
  ASSERT_TRUE(message.find("loss became") != std::string::npos || message.find("weights became non-finite") != std::string::npos) << message;
  const fs::path last = latest_checkpoint(dir / "nan");
  ASSERT_FALSE(last.empty());
  EXPECT_NE(message.find(last.string()), std::string::npos) << message;
  Experiment x = tiny_experiment();
  const CheckpointInfo info = load_checkpoint(last, x.model);
  for (const auto& p : x.model->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  EXPECT_FALSE(fs::exists(dir / "nan" / ("iter_" + std::to_string(info.iteration + 1) + ".pt")));
  for (const auto& e : fs::directory_iterator(dir / "nan")) {
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
  }
}

TEST_F(EngineTest, SlidingWindowCoversTheImageAndMatchesWholeWhenOneWindowFits) {
  Experiment x = tiny_experiment();
  x.model->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor image = torch::randn({1, 3, 40, 72});
  EvalSettings whole;
  EvalSettings one_window;
  one_window.mode = "slide";
  one_window.crop_size = {64, 128};  // larger than the image: a single window
  EXPECT_TRUE(torch::allclose(segment(x.model, image, whole), segment(x.model, image, one_window)));
  EvalSettings tiles = one_window;
  tiles.crop_size = {24, 32};
  tiles.stride = {16, 20};  // overlapping windows, the last ones flush with the border
  const at::Tensor tiled = segment(x.model, image, tiles);
  EXPECT_EQ(tiled.sizes(), (at::IntArrayRef{1, 6, 40, 72}));
  EXPECT_TRUE(torch::isfinite(tiled).all().item<bool>());
  // Windows start at rows 0, 16 and columns 0, 20, 40 (the last flush with the border): only
  // the one at (16, 40) covers the bottom-right pixel, so there the result is its prediction.
  const at::Tensor corner = x.model->predict(image.slice(2, 16, 40).slice(3, 40, 72));
  EXPECT_TRUE(torch::allclose(tiled.select(2, 39).select(2, 71), corner.select(2, 23).select(2, 31), 1e-4, 1e-5));
}

TEST_F(EngineTest, FlipAveragesTheMirroredPrediction) {
  Experiment x = tiny_experiment();
  x.model->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor image = torch::randn({1, 3, 32, 48});
  EvalSettings flip;
  flip.flip = true;
  const at::Tensor expected = (x.model->predict(image) + x.model->predict(image.flip({3})).flip({3})) / 2;
  EXPECT_TRUE(torch::allclose(segment(x.model, image, flip), expected));
}

}  // namespace
}  // namespace attnseg
