// Checkpoints (round trip, wrong model, corrupt file), resume reproducing an uninterrupted
// run, and a NaN loss stopping training with the last good checkpoint kept.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include <cmath>

#include "data/dataset.h"
#include "data/synthetic.h"
#include "engine/checkpoint.h"
#include "engine/evaluator.h"
#include "engine/experiment.h"
#include "engine/trainer.h"
#include "engine_util.h"
#include "test_util.h"

namespace attnseg {
namespace {

using test::TempDir;
using test::tiny_config;
using test::write_file;
namespace fs = std::filesystem;

using test::losses;
using test::metric_lines;

// The learning curve's points as (iteration, mIoU), in the order written.
std::vector<std::pair<int64_t, double>> curve(const fs::path& metrics) {
  std::vector<std::pair<int64_t, double>> out;
  for (const auto& j : metric_lines(metrics)) {
    if (j.contains("val_mIoU")) out.emplace_back(j["iter"].get<int64_t>(), j["val_mIoU"].get<double>());
  }
  return out;
}

at::Tensor flat_parameters(const Segmentor& model) {
  std::vector<at::Tensor> parts;
  for (const auto& p : model->parameters()) parts.push_back(p.detach().reshape(-1));
  return at::cat(parts);
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
  Segmentor tiny_model(const std::string& block = "ccnet", const std::vector<std::string>& overrides = {}) {
    write_file(dir / (block + ".yaml"), tiny_config(data_->path(), block));
    return test::model_of(Config::load(dir / (block + ".yaml"), overrides));
  }
  static TempDir* data_;
  TempDir dir;
};
TempDir* EngineTest::data_ = nullptr;

TEST_F(EngineTest, CheckpointRoundTripRestoresModelAndOptimizer) {
  Segmentor a = tiny_model();
  torch::optim::SGD opt(a->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  a->train();
  const at::Tensor x = torch::randn({2, 3, 48, 40});
  const at::Tensor y = torch::randint(0, 6, {2, 48, 40});
  a->loss(a->forward(x), y).total.backward();
  opt.step();
  save_checkpoint(dir / "a.pt", a, &opt, {17, "yaml: here"});
  EXPECT_FALSE(fs::exists(dir / "a.pt.tmp"));

  Segmentor b = tiny_model("ccnet", {"train.seed=123"});  // a differently initialised twin
  ASSERT_FALSE(torch::equal(a->parameters()[0], b->parameters()[0]));
  torch::optim::SGD opt_b(b->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  const CheckpointInfo info = load_checkpoint(dir / "a.pt", b, &opt_b);
  EXPECT_EQ(info.iteration, 17);
  EXPECT_EQ(info.config_yaml, "yaml: here");
  a->eval();
  b->eval();
  EXPECT_TRUE(torch::equal(a->predict(x), b->predict(x)));
  // momentum buffers came back: one more identical step keeps the twins identical
  a->train();
  b->train();
  opt.zero_grad();
  opt_b.zero_grad();
  torch::manual_seed(5);
  a->loss(a->forward(x), y).total.backward();
  torch::manual_seed(5);
  b->loss(b->forward(x), y).total.backward();
  opt.step();
  opt_b.step();
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    EXPECT_TRUE(torch::allclose(a->parameters()[i], b->parameters()[i])) << i;
  }
}

TEST_F(EngineTest, CheckpointOfAnotherModelIsRefusedByName) {
  Segmentor ccnet = tiny_model("ccnet");
  save_checkpoint(dir / "ccnet.pt", ccnet, nullptr, {1, ""});
  Segmentor none = tiny_model("none");
  try {
    load_checkpoint(dir / "ccnet.pt", none);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("ccnet.pt was written for another model"), std::string::npos) << m;
  }
}

TEST_F(EngineTest, CorruptOrMissingCheckpointIsNamed) {
  Segmentor x = tiny_model();
  write_file(dir / "junk.pt", "definitely not a zip archive");
  EXPECT_THROW(
      {
        try {
          load_checkpoint(dir / "junk.pt", x);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("junk.pt"), std::string::npos);
          throw;
        }
      },
      Error);
  EXPECT_THROW(load_checkpoint(dir / "absent.pt", x), Error);
}

// In process, from a copy of the full run's checkpoint at iteration 3; the same through real
// kills at any moment is Faults.TwentyKillsDuringOneTrainingEachResumedEndAtTheUninterruptedRunsLosses.
TEST_F(EngineTest, ResumeFromACheckpointOfTheRunReproducesItsLaterLosses) {
  const Config c = config({"train.iters=6", "train.checkpoint_interval=3", "train.keep_checkpoints=3"});
  test::train_config(c, dir / "full", false);
  const std::vector<double> full = losses(dir / "full/metrics.jsonl");
  ASSERT_EQ(full.size(), 6u);

  // The directory as a run killed after its checkpoint at iteration 3 leaves it.
  fs::create_directories(dir / "cut");
  fs::copy_file(dir / "full/iter_3.pt", dir / "cut/iter_3.pt");
  write_file(dir / "cut/last_checkpoint", "iter_3.pt\n");
  const TrainResult r = test::train_config(c, dir / "cut", /*resume=*/true);
  // The resumed run went on to the end: its last checkpoint is iteration 6's, written by it.
  ASSERT_EQ(r.checkpoint, dir / "cut/iter_6.pt");
  Segmentor last = tiny_model();
  EXPECT_EQ(load_checkpoint(r.checkpoint, last).iteration, 6);
  Segmentor resumed_from = tiny_model();
  load_checkpoint(dir / "cut/iter_3.pt", resumed_from);
  EXPECT_FALSE(torch::equal(flat_parameters(last), flat_parameters(resumed_from))) << "three steps changed no weight";
  EXPECT_EQ(latest_checkpoint(dir / "cut"), dir / "cut/iter_6.pt");
  const std::vector<double> resumed = losses(dir / "cut/metrics.jsonl");
  ASSERT_EQ(resumed.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(resumed[i], full[i + 3]) << "iteration " << i + 4;
}

// eval.interval=2 over 5 iterations: points at 2, 4 and the last iteration, each with every
// class's IoU, on eval.subset images; evaluating draws no random number, so the losses are
// bit for bit those of the same run without the curve.
TEST_F(EngineTest, TheLearningCurveHasAPointEveryIntervalAndLeavesTheLossesBitIdentical) {
  const std::vector<std::string> run{"train.iters=5", "train.checkpoint_interval=5"};
  test::train_config(config(run), dir / "plain", false);
  auto with_curve = run;
  with_curve.insert(with_curve.end(), {"eval.interval=2", "eval.subset=2"});
  test::train_config(config(with_curve), dir / "curve", false);
  EXPECT_EQ(losses(dir / "curve/metrics.jsonl"), losses(dir / "plain/metrics.jsonl"));
  ASSERT_EQ(losses(dir / "plain/metrics.jsonl").size(), 5u);
  EXPECT_TRUE(curve(dir / "plain/metrics.jsonl").empty());
  std::vector<int64_t> iterations;
  for (const auto& j : metric_lines(dir / "curve/metrics.jsonl")) {
    if (!j.contains("val_mIoU")) continue;
    iterations.push_back(j["iter"].get<int64_t>());
    EXPECT_EQ(j["val_images"].get<int64_t>(), 2);
    const double miou = j["val_mIoU"].get<double>();
    EXPECT_TRUE(miou >= 0 && miou <= 1) << miou;
    EXPECT_EQ(j["val_IoU"].size(), read_experiment(config()).data.class_names.size());
  }
  EXPECT_EQ(iterations, (std::vector<int64_t>{2, 4, 5}));
  // The last point is what `eval` gives the final checkpoint on the same two images.
  const Validation last = [&] {
    Segmentor model = tiny_model();
    load_checkpoint(dir / "curve/iter_5.pt", model);
    const Experiment x = read_experiment(config());
    return validate(model, FolderDataset(x.data.val), x, Runtime{}, 2);
  }();
  EXPECT_DOUBLE_EQ(curve(dir / "curve/metrics.jsonl").back().second, last.metrics.miou);
}

// A run killed after its point at iteration 4 and before its checkpoint there resumes from
// iteration 3: the resumed curve is the uninterrupted one, each point once, in order.
TEST_F(EngineTest, AResumedRunContinuesTheLearningCurveWithoutGapsOrDuplicates) {
  const Config c = config({"train.iters=6", "train.checkpoint_interval=3", "train.keep_checkpoints=3",
                           "eval.interval=2", "eval.subset=2"});
  test::train_config(c, dir / "full", false);
  const auto full = curve(dir / "full/metrics.jsonl");
  ASSERT_EQ(full.size(), 3u);
  fs::create_directories(dir / "cut");
  fs::copy_file(dir / "full/iter_3.pt", dir / "cut/iter_3.pt");
  write_file(dir / "cut/last_checkpoint", "iter_3.pt\n");
  std::string upto4;
  for (const auto& j : metric_lines(dir / "full/metrics.jsonl")) {
    if (j["iter"].get<int64_t>() <= 4) upto4 += j.dump() + "\n";
  }
  write_file(dir / "cut/metrics.jsonl", upto4);
  test::train_config(c, dir / "cut", /*resume=*/true);
  EXPECT_EQ(curve(dir / "cut/metrics.jsonl"), full);
  EXPECT_EQ(losses(dir / "cut/metrics.jsonl"), losses(dir / "full/metrics.jsonl"));
}

// The loss lines say how the block trains: the head's gate and its gradient, the size of the
// block's input and of the change the head makes to it, and the gradient norm over the
// block's parameters. Under `start: paper` ccnet's gamma starts at 0, so the first forward
// changes nothing (branch 0) while the gate rule's first forward does.
TEST_F(EngineTest, TheLossLinesCarryTheBlocksGateBranchScaleAndGradientNorm) {
  const std::vector<std::string> run{"train.iters=4", "train.checkpoint_interval=4", "train.log_interval=1"};
  test::train_config(config(run), dir / "gate", false);
  const auto lines = metric_lines(dir / "gate/metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  for (const auto& j : lines) {
    ASSERT_TRUE(j.contains("block")) << j.dump();
    const auto& b = j["block"];
    EXPECT_GT(b["branch_rms"].get<double>(), 0) << j.dump();
    EXPECT_GT(b["input_rms"].get<double>(), 0) << j.dump();
    EXPECT_GT(b["grad_norm"].get<double>(), 0) << j.dump();
    EXPECT_TRUE(b["gate_grad"].is_number()) << j.dump();
  }
  EXPECT_NE(lines[0]["block"]["gate"].get<double>(), 1.0);  // one step moved it from 1
  Segmentor model = tiny_model();
  load_checkpoint(dir / "gate/iter_4.pt", model);
  EXPECT_EQ(lines[3]["block"]["gate"].get<double>(), model->head()->gate().item<double>());

  auto paper = run;
  paper.push_back("model.attention.start=paper");
  test::train_config(config(paper), dir / "paper", false);
  const auto first = metric_lines(dir / "paper/metrics.jsonl").front()["block"];
  EXPECT_FALSE(first.contains("gate")) << first.dump();
  EXPECT_EQ(first["branch_rms"].get<double>(), 0.0) << first.dump();
  EXPECT_GT(first["grad_norm"].get<double>(), 0.0) << first.dump();  // gamma's own gradient
}

// A block with a loss of its own (routing's commitment loss is one): the identity scaled by a
// parameter s, whose loss after a training-mode forward is (s·x)² averaged, undefined after an
// evaluation-mode one.
class OwnLossBlock : public AttentionBlockImpl {
 public:
  OwnLossBlock() { scale = register_parameter("scale", torch::ones({1})); }
  torch::Tensor forward(const torch::Tensor& x) override {
    const torch::Tensor y = x * scale;
    last_ = is_training() ? y.pow(2).mean() : torch::Tensor();
    return y;
  }
  int64_t macs(const std::vector<int64_t>&) const override { return 0; }
  torch::Tensor aux_loss() const override { return last_; }
  torch::Tensor scale;

 private:
  torch::Tensor last_;
};

TEST_F(EngineTest, TheBlocksOwnLossIsAddedToTheTotalAndCarriesItsGradient) {
  ModelSettings settings = read_experiment(config()).model;
  auto block = std::make_shared<OwnLossBlock>();
  settings.block.build = [block] { return AttentionBlock(block); };
  torch::manual_seed(0);
  Segmentor model = build_segmentor(settings);
  model->train();
  const at::Tensor images = torch::randn({2, 3, 32, 32});
  const at::Tensor labels = torch::randint(0, 3, {2, 32, 32}, torch::kLong);
  const SegmentorOutput out = model->forward(images);
  const SegmentorLoss loss = model->loss(out, labels);
  ASSERT_TRUE(loss.block.defined());
  EXPECT_NEAR(loss.block.item<double>(), block->aux_loss().item<double>(), 1e-7);
  EXPECT_NEAR(loss.total.item<double>(),
              (loss.decode + settings.aux_weight * loss.aux + loss.block).item<double>(), 1e-5);
  // The block loss's own gradient on s, 2·mean(x²)·s, is part of s's gradient: the total's
  // gradient less the gradient of the losses without it.
  const at::Tensor total_grad = torch::autograd::grad({loss.total}, {block->scale}, {}, true)[0];
  const at::Tensor rest_grad = torch::autograd::grad({loss.total - loss.block}, {block->scale})[0];
  EXPECT_GT((total_grad - rest_grad).abs().item<double>(), 0);
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(model->loss(model->forward(images), labels).block.defined());
}

// Routing's commitment loss reaches the trainer: every loss line logs it as block_loss, and the
// total is the sum of the three losses (the auxiliary head's with its weight 0.4).
TEST_F(EngineTest, RoutingsCommitmentLossIsAddedToTheTotalAndLoggedAsTheBlockLoss) {
  write_file(dir / "routing.yaml", tiny_config(data_->path(), "routing"));
  const Config routing = Config::load(dir / "routing.yaml", {"train.iters=3", "train.checkpoint_interval=3",
                                                                "train.log_interval=1"});
  test::train_config(routing, dir / "routing", false);
  const auto lines = metric_lines(dir / "routing/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& j : lines) {
    ASSERT_TRUE(j.contains("block_loss")) << j.dump();
    EXPECT_GT(j["block_loss"].get<double>(), 0) << j.dump();
    EXPECT_NEAR(j["loss"].get<double>(),
                j["decode_loss"].get<double>() + 0.4 * j["aux_loss"].get<double>() + j["block_loss"].get<double>(),
                1e-5)
        << j.dump();
  }
}

// eval measures the trained block's effective receptive field on validation features: the
// identity reaches exactly its own pixel, criss-cross attention (two passes) most of the map.
TEST_F(EngineTest, EvalReportsTheTrainedBlocksEffectiveReceptiveField) {
  const Config none = config({"model.attention.type=none", "train.iters=1", "train.checkpoint_interval=1"});
  test::train_config(none, dir / "none", false);
  const nlohmann::json a = report_json(test::evaluate_config(none, dir / "none/iter_1.pt"));
  const int64_t h = a["erf"]["height"].get<int64_t>(), w = a["erf"]["width"].get<int64_t>();
  ASSERT_GT(h * w, 1);
  EXPECT_EQ(a["erf"]["images"].get<int64_t>(), 3);  // the whole validation split: 3 scenes
  EXPECT_DOUBLE_EQ(a["erf"]["share"].get<double>(), 1.0 / static_cast<double>(h * w));
  const Config ccnet = config({"train.iters=1", "train.checkpoint_interval=1"});
  test::train_config(ccnet, dir / "ccnet", false);
  const nlohmann::json b = report_json(test::evaluate_config(ccnet, dir / "ccnet/iter_1.pt"));
  EXPECT_GT(b["erf"]["share"].get<double>(), 0.5);
  EXPECT_LE(b["erf"]["share"].get<double>(), 1.0);
}

TEST_F(EngineTest, ANegativeEvalIntervalIsRefusedByItsKey) {
  const std::string m = test::error_of([&] { read_experiment(config({"eval.interval=-1"})); });
  EXPECT_NE(m.find("eval.interval"), std::string::npos) << m;
}

// eval's JSON carries the confusion matrix: its rows hold every labelled pixel of the
// validation images once, its diagonal over its total is aAcc, and each class's IoU is
// diagonal / (row + column − diagonal), its accuracy diagonal / row (rows are the truth).
TEST_F(EngineTest, TheEvalJsonConfusionMatrixAccountsForEveryLabelledPixelAndGivesTheIoUs) {
  const Config c = config({"train.iters=2", "train.checkpoint_interval=2"});
  test::train_config(c, dir / "run", false);
  const EvalResult r = test::evaluate_config(c, dir / "run/iter_2.pt");
  const nlohmann::json j = report_json(r);
  const auto& pixels = j["confusion"]["pixels"];
  const size_t k = r.class_names.size();
  ASSERT_EQ(pixels.size(), k);
  int64_t labelled = 0;
  FolderDataset val(read_experiment(c).data.val);
  for (size_t i = 0; i < val.size(); ++i) {
    const cv::Mat mask = val.load(i).mask;
    labelled += static_cast<int64_t>(mask.total()) - cv::countNonZero(mask == 255);
  }
  int64_t total = 0, diagonal = 0;
  std::vector<int64_t> row(k, 0), column(k, 0);
  for (size_t i = 0; i < k; ++i) {
    ASSERT_EQ(pixels[i].size(), k);
    for (size_t p = 0; p < k; ++p) {
      const int64_t n = pixels[i][p].get<int64_t>();
      total += n;
      row[i] += n;
      column[p] += n;
      if (i == p) diagonal += n;
    }
  }
  EXPECT_EQ(total, labelled);
  EXPECT_DOUBLE_EQ(j["aAcc"].get<double>(), static_cast<double>(diagonal) / static_cast<double>(total));
  for (size_t i = 0; i < k; ++i) {
    const int64_t d = pixels[i][i].get<int64_t>(), u = row[i] + column[i] - d;
    if (row[i] > 0) {
      EXPECT_DOUBLE_EQ(j["classes"][i]["acc"].get<double>(), static_cast<double>(d) / static_cast<double>(row[i])) << i;
    }
    if (u == 0) continue;
    EXPECT_DOUBLE_EQ(j["classes"][i]["iou"].get<double>(), static_cast<double>(d) / static_cast<double>(u)) << i;
  }
}

// On a dataset with region maps (the reach family), eval scores the context classes on each
// region: one entry per name in regions.txt, counting exactly the labelled pixels the maps give
// that region; a region map with an id regions.txt does not name is refused by file.
TEST_F(EngineTest, EvalScoresTheContextClassesOnEachRegionOfTheRegionMaps) {
  TempDir reach;
  SynthOptions o{/*train=*/4, /*val=*/3, /*size=*/32, /*seed=*/0};
  o.task = "reach";
  write_synthetic_dataset(reach.path(), o);
  const Config c = config({"data.root=" + reach.path().string(), "train.iters=1", "train.checkpoint_interval=1",
                           "data.classes=[background,key_checker,key_stripes,lamp,tri_checker,tri_stripes]",
                           "eval.context_classes=[tri_checker,tri_stripes]", "eval.cue_classes=[key_checker,key_stripes]"});
  test::train_config(c, dir / "run", false);
  const EvalResult r = test::evaluate_config(c, dir / "run/iter_1.pt");
  ASSERT_EQ(r.regions.size(), 4u);
  EXPECT_EQ(r.region_classes, (std::vector<std::string>{"tri_checker", "tri_stripes"}));
  for (int bin = 1; bin <= 4; ++bin) {
    int64_t pixels = 0;
    for (int k = 0; k < 3; ++k) pixels += cv::countNonZero(make_reach_scene(32, 0, "val", k).regions == bin);
    const RegionScore& s = r.regions[static_cast<size_t>(bin - 1)];
    EXPECT_EQ(s.name, reach_bin_names(32)[static_cast<size_t>(bin - 1)]);
    EXPECT_EQ(s.pixels, pixels) << s.name;
    ASSERT_EQ(s.class_iou.size(), 2u);
    if (!std::isnan(s.iou)) {
      EXPECT_GE(s.iou, 0.0);
      EXPECT_LE(s.iou, 1.0);
    }
  }
  const nlohmann::json j = report_json(r);
  ASSERT_EQ(j["regions"].size(), 4u);
  EXPECT_EQ(j["regions"][2]["pixels"].get<int64_t>(), r.regions[2].pixels);
  EXPECT_NE(format_report(r).find("IoU of tri_checker, tri_stripes by region:"), std::string::npos);
  // Every validation scene holds the key and triangles: the cue's influence is measured on the first three.
  EXPECT_EQ(r.cue_images, 3);
  EXPECT_GE(r.cue_share, 0.0);
  EXPECT_LE(r.cue_share, 1.0);
  EXPECT_GT(r.cue_area, 0.0);

  cv::Mat bad = make_reach_scene(32, 0, "val", 1).regions.clone();
  bad.at<uint8_t>(3, 5) = 7;
  cv::imwrite((reach / "regions" / "val_00001.png").string(), bad);
  const std::string m = test::error_of([&] { test::evaluate_config(c, dir / "run/iter_1.pt"); });
  EXPECT_NE(m.find("val_00001.png"), std::string::npos) << m;
  EXPECT_NE(m.find("region 7 at (5, 3)"), std::string::npos) << m;
}

// The cue influence on the default scenes (64x384), where every disc pixel lies beyond the
// convolutions' reach of the beacon: exactly zero for the attention-free model, positive once a
// global block (nonlocal) sits in the head, even after one step.
TEST_F(EngineTest, CueInfluenceIsExactlyZeroBeyondTheConvolutionsAndPositiveThroughAGlobalBlock) {
  TempDir scenes;
  write_synthetic_dataset(scenes.path(), {/*train=*/2, /*val=*/4, /*size=*/64, /*seed=*/0});
  auto cue = [&](const std::string& block) {
    const Config c = Config::load(ATTNSEG_SOURCE_DIR "/configs/none_r18_synthetic.yaml",
                                  {"model.attention.type=" + block, "data.root=" + scenes.path().string(),
                                   "data.batch_size=2", "data.workers=1", "train.iters=1", "train.checkpoint_interval=1",
                                   "eval.speed_runs=1", "runtime.threads=1"});
    test::train_config(c, dir / block, false);
    return test::evaluate_config(c, dir / block / "iter_1.pt");
  };
  const EvalResult none = cue("none");
  EXPECT_EQ(none.cue_images, 4);
  EXPECT_EQ(none.cue_share, 0.0);
  EXPECT_NEAR(none.cue_area, 1.0 / 6.0, 1e-12);  // the beacon band: 64 of 384 columns
  const EvalResult nonlocal = cue("nonlocal");
  EXPECT_GT(nonlocal.cue_share, 0.0);
  EXPECT_LT(nonlocal.cue_share, 1.0);
}

TEST_F(EngineTest, NaNLossStopsAndKeepsTheLastGoodCheckpoint) {
  // Two sane iterations, then the same run resumed with a learning rate that must diverge.
  test::train_config(config({"train.iters=2", "train.checkpoint_interval=1"}), dir / "nan", false);
  const Config c = config({"train.iters=30", "train.lr=1e12", "train.warmup_iters=0",
                           "train.checkpoint_interval=1", "train.keep_checkpoints=2"});
  std::string message;
  try {
    test::train_config(c, dir / "nan", /*resume=*/true);
  } catch (const Error& e) {
    message = e.what();
  }
  ASSERT_TRUE(message.find("loss became non-finite") != std::string::npos || message.find("weights became non-finite") != std::string::npos) << message;
  const fs::path last = latest_checkpoint(dir / "nan");
  ASSERT_FALSE(last.empty());
  EXPECT_NE(message.find(last.string()), std::string::npos) << message;
  Segmentor x = tiny_model();
  const CheckpointInfo info = load_checkpoint(last, x);
  for (const auto& p : x->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  EXPECT_FALSE(fs::exists(dir / "nan" / ("iter_" + std::to_string(info.iteration + 1) + ".pt")));
  for (const auto& e : fs::directory_iterator(dir / "nan")) {
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
  }
}

// The first non-finite loss is found without reading the loss back every step: a run that
// logs every 7 iterations names the same first bad iteration as one that logs every one, and
// keeps no checkpoint written after it.
TEST_F(EngineTest, ANonFiniteLossBetweenLogLinesIsNamedByItsOwnIteration) {
  const std::vector<std::string> diverging{"train.iters=40", "train.lr=1e12", "train.warmup_iters=0",
                                           "train.checkpoint_interval=1000"};
  auto first_bad = [&](const std::string& log_interval, const std::string& work) -> int64_t {
    std::vector<std::string> o = diverging;
    o.push_back("train.log_interval=" + log_interval);
    try {
      test::train_config(config(o), dir / work, false);
    } catch (const Error& e) {
      const std::string m = e.what();
      const size_t at = m.find("at iteration ");
      EXPECT_NE(at, std::string::npos) << m;
      EXPECT_NE(m.find("last good checkpoint: none"), std::string::npos) << m;
      return static_cast<int64_t>(std::stoll(m.substr(at + 13)));
    }
    ADD_FAILURE() << "a learning rate of 1e12 did not diverge";
    return int64_t{-1};
  };
  const int64_t every = first_bad("1", "every");
  const int64_t sparse = first_bad("7", "sparse");
  EXPECT_GE(every, 1);
  EXPECT_EQ(sparse, every);
  EXPECT_NE(every % 7, 0) << "pick settings whose first bad iteration is not a log line of the sparse run";
  EXPECT_FALSE(fs::exists(dir / "sparse" / "last_checkpoint"));
}

TEST(LossScaler, OverflowSkipsTheStepAndHalvesTheScaleFiniteStepsDoubleIt) {
  LossScaler scaler(/*scale=*/1024.0, /*interval=*/3);
  at::Tensor p = at::zeros({2}).requires_grad_();
  p.mutable_grad() = at::full({2}, 2048.0);
  EXPECT_TRUE(scaler.unscale_and_update({p}));
  EXPECT_TRUE(at::equal(p.grad(), at::full({2}, 2.0))) << "gradients divided by the scale";
  EXPECT_EQ(scaler.scale(), 1024.0);
  p.mutable_grad() = at::tensor({1.0, std::numeric_limits<double>::infinity()}, at::kFloat);
  EXPECT_FALSE(scaler.unscale_and_update({p}));
  EXPECT_EQ(scaler.scale(), 512.0);
  for (int i = 0; i < 2; ++i) {
    p.mutable_grad() = at::ones({2});
    EXPECT_TRUE(scaler.unscale_and_update({p}));
    EXPECT_EQ(scaler.scale(), 512.0) << "after " << i + 1 << " finite steps";
  }
  p.mutable_grad() = at::ones({2});
  EXPECT_TRUE(scaler.unscale_and_update({p}));
  EXPECT_EQ(scaler.scale(), 1024.0) << "three finite steps in a row";
}

TEST_F(EngineTest, Bf16TrainingOnTheCpuGivesFiniteLossesCloseToFp32) {
  const TrainResult fp32 = test::train_config(config({"train.iters=4"}), dir / "fp32", false);
  const TrainResult bf16 = test::train_config(config({"train.iters=4", "runtime.precision=bf16"}), dir / "bf16", false);
  const std::vector<double> a = losses(dir / "fp32/metrics.jsonl"), b = losses(dir / "bf16/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 0.05 * a[i]) << "iteration " << i + 1;
  EXPECT_NE(a, b) << "bf16 computed exactly as fp32: autocast did not engage";
  EXPECT_TRUE(fs::exists(bf16.checkpoint));
}

// A checkpoint's tensors go to the device of the model they are loaded into, whichever
// device wrote them. No second device here (LibTorch 1.13 cannot move a module to the meta
// device either): the archive a CPU checkpoint is read through is mapped to a meta device
// tag, so its tensors arrive there and not where they were written; the CUDA round trip is
// the GPU tests' to run.
TEST_F(EngineTest, ACheckpointsTensorsArriveOnTheMapLocationNotWhereTheyWereWritten) {
  Segmentor a = tiny_model();
  save_checkpoint(dir / "cpu.pt", a, nullptr, {1, ""});
  EXPECT_EQ(checkpoint_map_location(a), c10::Device(c10::kCPU));
  torch::serialize::InputArchive archive = read_checkpoint_archive(dir / "cpu.pt", c10::Device(c10::kMeta));
  torch::serialize::InputArchive model, head, classifier;
  archive.read("model", model);
  model.read("decode_head", head);
  head.read("classifier", classifier);
  at::Tensor weight;
  classifier.read("weight", weight);
  EXPECT_TRUE(weight.is_meta());
  EXPECT_EQ(weight.sizes(), a->head()->named_parameters()["classifier.weight"].sizes());
  // and through load_checkpoint, onto the CPU model's own device
  Segmentor b = tiny_model("ccnet", {"train.seed=9"});
  load_checkpoint(dir / "cpu.pt", b);
  for (const auto& p : b->parameters()) EXPECT_TRUE(p.is_cpu());
  EXPECT_TRUE(torch::equal(b->parameters()[0], a->parameters()[0]));
}

TEST_F(EngineTest, ACheckpointRestoresTheRandomStateItWasSavedWith) {
  Segmentor model = tiny_model();
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.1));
  torch::manual_seed(42);
  (void)torch::rand({3});
  save_checkpoint(dir / "rng.pt", model, &opt, {5, ""});
  const at::Tensor expected = torch::rand({8});
  torch::manual_seed(7);  // another state entirely
  load_checkpoint(dir / "rng.pt", model, &opt);
  EXPECT_TRUE(torch::equal(torch::rand({8}), expected));
}

// Options of blocks other than the active one are checked without being built: adding them
// to a config changes none of the model's initial weights (blocks whose construction draws
// random numbers among them: axial's embeddings, ema's bases).
TEST_F(EngineTest, InactiveBlockOptionsLeaveEveryInitialWeightBitIdentical) {
  const Segmentor plain = tiny_model("ccnet");
  const Segmentor more = tiny_model("ccnet", {"model.attention.axial.heads=2", "model.attention.ema.bases=8",
                                              "model.attention.nonlocal.reduction=4"});
  const auto a = plain->named_parameters(), b = more->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  const auto x = plain->named_buffers(), y = more->named_buffers();
  for (const auto& item : x) EXPECT_TRUE(torch::equal(item.value(), y[item.key()])) << item.key();
}

TEST_F(EngineTest, PredictWithBlockInputIsOnePassOfPredict) {
  Segmentor model = tiny_model("nonlocal");
  model->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor image = torch::randn({1, 3, 40, 72});
  const Prediction p = model->predict_with_block_input(image);
  EXPECT_TRUE(torch::equal(p.scores, model->predict(image)));
  EXPECT_TRUE(torch::equal(p.block_input, model->head()->block_input(model->backbone()->forward(image).stage4)));
  at::Tensor from_segment;
  EXPECT_TRUE(torch::equal(segment(model, image, EvalSettings{}, Runtime{}, &from_segment), p.scores));
  EXPECT_TRUE(torch::equal(from_segment, p.block_input));
}

TEST_F(EngineTest, SlidingWindowCoversTheImageAndMatchesWholeWhenOneWindowFits) {
  Segmentor x = tiny_model();
  x->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor image = torch::randn({1, 3, 40, 72});
  EvalSettings whole;
  EvalSettings one_window;
  one_window.mode = "slide";
  one_window.crop_size = {64, 128};  // larger than the image: a single window
  EXPECT_TRUE(torch::allclose(segment(x, image, whole), segment(x, image, one_window)));
  EvalSettings tiles = one_window;
  tiles.crop_size = {24, 32};
  tiles.stride = {16, 20};  // overlapping windows, the last ones flush with the border
  const at::Tensor tiled = segment(x, image, tiles);
  EXPECT_EQ(tiled.sizes(), (at::IntArrayRef{1, 6, 40, 72}));
  EXPECT_TRUE(torch::isfinite(tiled).all().item<bool>());
  // Windows start at rows 0, 16 and columns 0, 20, 40 (the last flush with the border): only
  // the one at (16, 40) covers the bottom-right pixel, so there the result is its prediction.
  const at::Tensor corner = x->predict(image.slice(2, 16, 40).slice(3, 40, 72));
  EXPECT_TRUE(torch::allclose(tiled.select(2, 39).select(2, 71), corner.select(2, 23).select(2, 31), 1e-4, 1e-5));
}

// mmsegmentation's window grid, ceil((h - crop) / stride) + 1 rows and as many columns by the
// width, for each ratio, twice with flip; counted here by hand.
TEST_F(EngineTest, ForwardsPerImageCountsEachRatiosWindowsAndTwiceWithFlip) {
  EXPECT_EQ(forwards_per_image(EvalSettings{}, 37, 53), 1);
  EvalSettings cityscapes;  // 1024x2048 in 512x1024 windows, stride 341: 3 rows, 5 columns
  cityscapes.mode = "slide";
  cityscapes.crop_size = {512, 1024};
  cityscapes.stride = {341, 341};
  EXPECT_EQ(forwards_per_image(cityscapes, 1024, 2048), 15);
  cityscapes.flip = true;
  EXPECT_EQ(forwards_per_image(cityscapes, 1024, 2048), 30);
  cityscapes.scales = {0.5, 1.0};  // at 0.5 the image is one window
  EXPECT_EQ(forwards_per_image(cityscapes, 1024, 2048), 32);
  EvalSettings tiles;  // the windows of SlidingWindowCoversTheImage...: rows 0, 16; columns 0, 20, 40
  tiles.mode = "slide";
  tiles.crop_size = {24, 32};
  tiles.stride = {16, 20};
  EXPECT_EQ(forwards_per_image(tiles, 40, 72), 6);
  EXPECT_EQ(forwards_per_image(tiles, 41, 72), 9) << "one row more past 40";
  EvalSettings whole;
  whole.scales = {0.75, 1.0, 1.25};
  whole.flip = true;
  EXPECT_EQ(forwards_per_image(whole, 37, 53), 6);
}

// The class probabilities of a model's scores.
at::Tensor probabilities(const at::Tensor& scores) { return at::softmax(scores.to(at::kDouble), 1); }

// As mmsegmentation's flip test: the mirrored view's probabilities, mirrored back, averaged
// with the image's (not its scores: on this image, 4x randn, the two averages part by more than
// ten times the tolerance).
TEST_F(EngineTest, FlipAveragesTheMirroredPredictionsProbabilities) {
  Segmentor x = tiny_model();
  x->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor image = torch::randn({1, 3, 32, 48}) * 4;
  EvalSettings flip;
  flip.flip = true;
  const at::Tensor a = x->predict(image), b = x->predict(image.flip({3})).flip({3});
  const at::Tensor p = probabilities(segment(x, image, flip));
  EXPECT_TRUE(torch::allclose(p, (probabilities(a) + probabilities(b)) / 2, 1e-5, 1e-7));
  EXPECT_GT((p - probabilities((a + b) / 2)).abs().max().item<double>(), 1e-4) << "scores averaged";
}

// mmsegmentation's multi-scale test on an odd size: each ratio's image (37x53 at 0.5 is 19x27,
// at 1.25 46x66: rounded) and its mirror image, their scores resized back bilinearly, and the
// six views' probabilities averaged.
TEST_F(EngineTest, MultiScaleAveragesTheProbabilitiesOfEachRatioAndMirrorResizedBackToTheImage) {
  Segmentor x = tiny_model();
  x->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor image = torch::randn({1, 3, 37, 53});
  const auto resized = [](const at::Tensor& t, int64_t h, int64_t w) {
    return torch::nn::functional::interpolate(
        t, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false));
  };
  // The summed probabilities of the image at h x w and its mirror image, back at 37x53.
  const auto views = [&](int64_t h, int64_t w) {
    const at::Tensor im = resized(image, h, w);
    return probabilities(resized(x->predict(im), 37, 53)) + probabilities(resized(x->predict(im.flip({3})).flip({3}), 37, 53));
  };
  const at::Tensor expected = (views(19, 27) + views(37, 53) + views(46, 66)) / 6;
  EvalSettings multi;
  multi.flip = true;
  multi.scales = {0.5, 1.0, 1.25};
  const at::Tensor scores = segment(x, image, multi);
  EXPECT_EQ(scores.sizes(), (at::IntArrayRef{1, 6, 37, 53}));
  EXPECT_TRUE(torch::allclose(probabilities(scores), expected, 1e-5, 1e-7));
  // The scales matter: without the 0.5 and 1.25 views the probabilities differ.
  EXPECT_FALSE(torch::allclose(probabilities(scores), views(37, 53) / 2, 1e-3, 1e-4));
  EvalSettings twice;
  twice.scales = {1.0, 1.0};
  EXPECT_TRUE(torch::allclose(probabilities(segment(x, image, twice)), probabilities(x->predict(image)), 1e-5, 1e-7));
  // eval.scale fits the image first, keeping its aspect ratio: [106, 74] takes 37x53 to 74x106
  // (both sides double), and the ratios multiply that: at 0.5 the model sees the image's size.
  EvalSettings fitted;
  fitted.scale = {106, 74};
  fitted.scales = {0.5, 1.0};
  EXPECT_TRUE(torch::allclose(
      probabilities(segment(x, image, fitted)),
      (probabilities(x->predict(image)) + probabilities(resized(x->predict(resized(image, 74, 106)), 37, 53))) / 2, 1e-5,
      1e-7));
  fitted.scale = {212, 74};  // the short side binds: still 74x106
  EXPECT_EQ(view_size(fitted, 37, 53, 1.0), (std::array<int64_t, 2>{74, 106}));
  fitted.scale = {74, 80};  // the larger bound is the long side's, and it binds: 53 -> 80, 37 -> 56 (55.85)
  EXPECT_EQ(view_size(fitted, 37, 53, 1.0), (std::array<int64_t, 2>{56, 80}));
  EXPECT_EQ(view_size(fitted, 53, 37, 0.5), (std::array<int64_t, 2>{40, 28})) << "portrait: the long side is the height";
}

}  // namespace
}  // namespace attnseg
