// The live demo's window-free parts: the newest-value hand-off between its threads, the keys,
// the capture → inference → display pipeline on a scripted source (dropping frames under slow
// inference, losing none when asked to, reconnecting a live source that stops), the
// influence map of a clicked pixel, and temporal mode's memory across frames.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <set>
#include <thread>
#include <vector>

#include "config/config.h"
#include "demo/pipeline.h"
#include "demo/slot.h"
#include "engine/experiment.h"
#include "head/segmentor.h"
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
      std::this_thread::sleep_for(
          std::chrono::milliseconds(20));  // inference slower than the source
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

TEST(LatestSlot, LosslessWaitsForTheConsumerInsteadOfDropping) {
  LatestSlot<int> slot(/*lossless=*/true);
  std::vector<int> taken;
  std::thread consumer([&] {
    while (auto v = slot.take()) {
      taken.push_back(*v);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  for (int i = 0; i < 30; ++i) slot.put(i);
  slot.close();
  consumer.join();
  ASSERT_EQ(taken.size(), 30u);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(taken[static_cast<size_t>(i)], i);
  EXPECT_EQ(slot.dropped(), 0);
}

TEST(LatestSlot, TakeForGivesUpAfterItsTimeout) {
  LatestSlot<int> slot;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(slot.take_for(std::chrono::milliseconds(30)), std::nullopt);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(25));
  EXPECT_FALSE(slot.finished());
  slot.put(7);
  slot.close();
  EXPECT_FALSE(slot.finished());
  EXPECT_EQ(slot.take_for(std::chrono::milliseconds(30)), 7);
  EXPECT_TRUE(slot.finished());
}

TEST(DemoKeys, SwitchPauseOpacityClearAndQuit) {
  DemoControls c;
  EXPECT_EQ(apply_key(c, 'n', 3), KeyAction::next_block);
  EXPECT_EQ(c.block, 1);
  apply_key(c, '\t', 3);
  apply_key(c, 'n', 3);
  EXPECT_EQ(c.block, 0) << "wraps after the last block";
  apply_key(c, 'p', 3);
  EXPECT_EQ(c.block, 2) << "and before the first";
  EXPECT_EQ(apply_key(c, '2', 3), KeyAction::select_block);
  EXPECT_EQ(c.block, 1);
  EXPECT_EQ(apply_key(c, '4', 3), KeyAction::none) << "there is no fourth block";
  EXPECT_EQ(c.block, 1);
  const int64_t version = c.version;
  apply_key(c, 'n', 3);
  EXPECT_GT(c.version, version) << "a paused frame must be segmented again by the new block";

  apply_key(c, ' ', 3);
  EXPECT_TRUE(c.paused);
  apply_key(c, ' ', 3);
  EXPECT_FALSE(c.paused);
  c.opacity = 0.5;
  apply_key(c, '+', 3);
  apply_key(c, '=', 3);
  EXPECT_DOUBLE_EQ(c.opacity, 0.7);
  for (int i = 0; i < 12; ++i) apply_key(c, '-', 3);
  EXPECT_DOUBLE_EQ(c.opacity, 0.0) << "clamped";

  c.set_pin(17, 5);
  ASSERT_TRUE(c.pinned());
  EXPECT_EQ(*c.pinned(), cv::Point(17, 5));
  EXPECT_EQ(apply_key(c, 'c', 3), KeyAction::clear);
  EXPECT_FALSE(c.pinned());
  EXPECT_EQ(apply_key(c, 's', 3), KeyAction::save);
  EXPECT_EQ(apply_key(c, -1, 3), KeyAction::none) << "no key pressed";
  EXPECT_FALSE(c.quit);
  EXPECT_EQ(apply_key(c, 0x100000 | 'q', 3), KeyAction::quit)
      << "modifier bits above the character";
  EXPECT_TRUE(c.quit);
  DemoControls esc;
  apply_key(esc, 27, 1);
  EXPECT_TRUE(esc.quit);
}

Segmentor model_with(const std::string& overrides_yaml, const test::TempDir& dir) {
  const auto file = dir / "model.yaml";
  test::write_file(file, test::tiny_config(dir.path(), "ccnet") + overrides_yaml);
  return build_model(read_experiment(Config::load(file)));
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

// A scripted source: numbered frames (the number in the first pixel) of 64x384, read in turn;
// `stops` are the frame counts at which read() fails once; `reopens` how many reopen() calls
// succeed. A live source paces itself like a camera at `fps`.
class ScriptedSource : public FrameSource {
 public:
  ScriptedSource(int frames, bool live, double fps, std::set<int> stops = {}, int reopens = 0)
      : frames_(frames), live_(live), fps_(fps), stops_(std::move(stops)), reopens_(reopens) {}
  bool read(cv::Mat& bgr) override {
    if (next_ >= frames_ || stops_.erase(next_) > 0) return false;
    bgr = cv::Mat(64, 384, CV_8UC3, cv::Scalar(90, 90, 90));
    bgr.at<cv::Vec3b>(0, 0) = cv::Vec3b(static_cast<uint8_t>(next_), 0, 0);
    ++next_;
    return true;
  }
  bool reopen() override {  // a file starts again from its first frame, a stream goes on
    ++reopen_calls;
    if (reopens_-- <= 0) return false;
    if (!live_) next_ = 0;
    return true;
  }
  bool live() const override { return live_; }
  double fps() const override { return fps_; }
  std::string name() const override { return "scripted"; }
  int reopen_calls = 0;

 private:
  int frames_, next_ = 0;
  bool live_;
  double fps_;
  std::set<int> stops_;
  int reopens_;
};

// Records the frame numbers it is shown.
class RecordingView : public DemoView {
 public:
  void show(const Segmented& f, const DemoStatus& status) override {
    if (numbered) {
      EXPECT_EQ(f.bgr.at<cv::Vec3b>(0, 0)[0], static_cast<uint8_t>(f.index))
          << "frame and result out of step";
    }
    EXPECT_EQ(f.labels.size(), f.bgr.size());
    shown.push_back(f.index);
    if (keep_influence) influences.push_back(f.influence.clone());
    dropped = status.dropped;
  }
  bool numbered = true;  // frame i carries i (not so for a looped file)
  bool keep_influence = false;
  std::vector<int64_t> shown;
  std::vector<cv::Mat> influences;
  int64_t dropped = 0;
};

DemoModels tiny_models(const test::TempDir& dir, const std::string& overrides_yaml = "") {
  Segmentor model = model_with(overrides_yaml, dir);
  model->eval();
  return {read_experiment(Config::load(dir / "model.yaml")), Runtime{}, {{"ccnet", "", model}}};
}

TEST(DemoPipeline, ASlowModelGetsTheNewestFramesAndTheRestAreCountedAsDropped) {
  test::TempDir dir;
  DemoModels models = tiny_models(dir);
  ScriptedSource source(60, /*live=*/false, /*fps=*/2000);  // a frame every 0.5 ms: faster than the model
  RecordingView view;
  DemoControls controls;
  DemoRunOptions run;
  run.paced = true;
  const DemoStats stats = run_demo(models, source, view, controls, run);
  EXPECT_EQ(stats.read, 60);
  ASSERT_FALSE(view.shown.empty());
  EXPECT_GT(stats.dropped, 0);
  EXPECT_EQ(stats.shown + stats.dropped, 60);
  EXPECT_EQ(static_cast<int64_t>(view.shown.size()), stats.shown);
  for (size_t i = 1; i < view.shown.size(); ++i) EXPECT_LT(view.shown[i - 1], view.shown[i]);
  EXPECT_EQ(view.shown.back(), 59) << "the newest frame is the one shown last";
  EXPECT_GT(stats.model_ms, 0.5) << "the premise: inference slower than the source";
}

TEST(DemoPipeline, LosslessShowsEveryFrameInOrder) {
  test::TempDir dir;
  DemoModels models = tiny_models(dir);
  ScriptedSource source(25, /*live=*/false, /*fps=*/500);
  RecordingView view;
  DemoControls controls;
  DemoRunOptions run;
  run.lossless = true;
  const DemoStats stats = run_demo(models, source, view, controls, run);
  EXPECT_EQ(stats.read, 25);
  EXPECT_EQ(stats.shown, 25);
  EXPECT_EQ(stats.dropped, 0);
  ASSERT_EQ(view.shown.size(), 25u);
  for (int64_t i = 0; i < 25; ++i) EXPECT_EQ(view.shown[static_cast<size_t>(i)], i);
  EXPECT_TRUE(stats.failure.empty());
}

// A pin at frame pixel (300, 40) of the 64x384 frames is feature pixel (5, 37) on the block's
// 8x48 grid (stride 8): with one criss-cross pass, every shown frame's influence map is
// nonzero on exactly that pixel's row and column, 1 at its largest, and zero elsewhere.
TEST(DemoPipeline, MaxFramesStopsTheRunAndAPinnedPixelGetsItsRowAndColumnOfInfluence) {
  test::TempDir dir;
  DemoModels models = tiny_models(dir, "model: {attention: {type: ccnet, ccnet: {recurrence: 1}}}\n");
  ScriptedSource source(50, /*live=*/false, 25);
  RecordingView view;
  view.keep_influence = true;
  DemoControls controls;
  controls.set_pin(300, 40);
  DemoRunOptions run;
  run.lossless = true;
  run.max_frames = 7;
  const DemoStats stats = run_demo(models, source, view, controls, run);
  EXPECT_EQ(stats.shown, 7);
  ASSERT_EQ(view.influences.size(), 7u);
  for (size_t i = 0; i < view.influences.size(); ++i) {
    const cv::Mat& map = view.influences[i];
    ASSERT_EQ(map.size(), cv::Size(48, 8)) << "the block's grid: 64x384 at stride 8";
    ASSERT_EQ(map.type(), CV_32FC1);
    double top = 0;
    cv::minMaxLoc(map, nullptr, &top);
    EXPECT_FLOAT_EQ(top, 1.0f) << "frame " << i;
    cv::Mat cross(8, 48, CV_8UC1, cv::Scalar(0));
    cross.row(5).setTo(255);
    cross.col(37).setTo(255);
    const cv::Mat reached = map > 0;
    EXPECT_EQ(cv::countNonZero(reached != cross), 0)
        << "frame " << i << ": pixels reached (255) where only row 5 and column 37 should be:\n" << reached;
  }
}

TEST(DemoPipeline, ALiveSourceThatStopsIsReconnectedThenGivenUpAfterItsRetries) {
  test::TempDir dir;
  DemoModels models = tiny_models(dir);
  // stops after frame 5 and comes back once; stops again after frame 9 and stays away
  ScriptedSource source(1000, /*live=*/true, 25, {5, 9}, /*reopens=*/1);
  RecordingView view;
  DemoControls controls;
  DemoRunOptions run;
  run.retries = 3;
  run.retry_wait_s = 0;
  const DemoStats stats = run_demo(models, source, view, controls, run);
  EXPECT_EQ(stats.read, 9);
  EXPECT_EQ(stats.reconnects, 1);
  EXPECT_EQ(source.reopen_calls, 1 + 3);
  EXPECT_NE(
      stats.failure.find("the stream stopped after 9 frames and did not come back after 3 tries"),
      std::string::npos)
      << stats.failure;
  ASSERT_FALSE(view.shown.empty());
  EXPECT_EQ(view.shown.back(), 8) << "the frames read before it are still shown";
}

TEST(DemoPipeline, AFileEndsWithoutRetriesOrLoopsWhenAsked) {
  test::TempDir dir;
  DemoModels models = tiny_models(dir);
  ScriptedSource once(6, /*live=*/false, 25);
  RecordingView view;
  DemoControls controls;
  DemoRunOptions run;
  run.lossless = true;
  DemoStats stats = run_demo(models, once, view, controls, run);
  EXPECT_EQ(stats.read, 6);
  EXPECT_EQ(once.reopen_calls, 0);
  EXPECT_TRUE(stats.failure.empty());

  ScriptedSource looped(6, /*live=*/false, 25, {}, /*reopens=*/5);
  RecordingView again;
  again.numbered = false;
  run.loop = true;
  run.max_frames = 15;
  DemoControls fresh;
  stats = run_demo(models, looped, again, fresh, run);
  EXPECT_EQ(stats.shown, 15);
  EXPECT_EQ(looped.reopen_calls, 2) << "6 + 6 + 3 frames";
}

// --- temporal mode ------------------------------------------------------------------------

// A block with state across frames: the identity that counts the forwards since its last
// reset, and records each count. The demo names it `none` (a registered name, for the demo's
// look-up of what a block needs), which is what it computes.
class FrameCountingBlock : public AttentionBlockImpl {
 public:
  torch::Tensor forward(const torch::Tensor& x) override {
    counts.push_back(temporal_ ? ++since_reset_ : 0);
    return x;
  }
  int64_t macs(const std::vector<int64_t>&) const override { return 0; }
  bool temporal_capable() const override { return true; }
  void set_temporal(bool on) override { temporal_ = on; }
  void reset_temporal() override { since_reset_ = 0; }
  bool temporal() const { return temporal_; }
  std::vector<int64_t> counts;

 private:
  bool temporal_ = false;
  int64_t since_reset_ = 0;
};

Segmentor model_around(const std::shared_ptr<AttentionBlockImpl>& block, const test::TempDir& dir) {
  model_with("", dir);  // writes model.yaml
  ModelSettings settings = read_experiment(Config::load(dir / "model.yaml")).model;
  settings.block.build = [block] { return AttentionBlock(block); };
  Segmentor model = build_segmentor(settings);
  model->eval();
  return model;
}

// Frames of one grey level, a brighter one from frame `cut` on: a scene cut there.
class CutSource : public FrameSource {
 public:
  CutSource(int frames, int cut) : frames_(frames), cut_(cut) {}
  bool read(cv::Mat& bgr) override {
    if (next_ >= frames_) return false;
    bgr = cv::Mat(64, 384, CV_8UC3, cv::Scalar::all(next_ < cut_ ? 60 : 200));
    bgr.at<cv::Vec3b>(0, 0) = cv::Vec3b(static_cast<uint8_t>(next_), 0, 0);
    ++next_;
    return true;
  }
  bool reopen() override { return false; }
  bool live() const override { return false; }
  double fps() const override { return 100; }
  std::string name() const override { return "cut"; }

 private:
  int frames_, cut_, next_ = 0;
};

class MemoryView : public DemoView {
 public:
  void show(const Segmented& f, const DemoStatus&) override {
    lines.push_back(f.memory);
    blocks.push_back(f.block);
    if (on_show) on_show(f);
  }
  std::vector<std::string> lines;
  std::vector<int> blocks;
  std::function<void(const Segmented&)> on_show;
};

TEST(DemoTemporal, MemoryCarriesFromFrameToFrameAndIsForgottenAtASceneCut) {
  test::TempDir dir;
  auto block = std::make_shared<FrameCountingBlock>();
  DemoModels models{read_experiment(Config::load([&] {
                      model_with("", dir);
                      return dir / "model.yaml";
                    }())),
                    Runtime{}, {{"none", "", model_around(block, dir)}}};
  CutSource source(9, /*cut=*/5);
  MemoryView view;
  DemoControls controls;
  DemoRunOptions run;
  run.lossless = true;
  run.temporal = true;
  run_demo(models, source, view, controls, run);
  EXPECT_EQ(block->counts, (std::vector<int64_t>{1, 2, 3, 4, 5, 1, 2, 3, 4}));
  ASSERT_EQ(view.lines.size(), 9u);
  EXPECT_EQ(view.lines[0], "memory reset: first frame");
  EXPECT_EQ(view.lines[3], "memory: carried over 3 frames");
  EXPECT_EQ(view.lines[5], "memory reset: scene cut");
  EXPECT_EQ(view.lines[6], "memory: carried over 1 frame");
  EXPECT_FALSE(block->temporal()) << "temporal mode is switched off when the run ends";

  // Without --temporal the block never carries anything and the overlay says nothing.
  block->counts.clear();
  CutSource again(4, 2);
  MemoryView quiet;
  DemoControls fresh;
  run.temporal = false;
  run_demo(models, again, quiet, fresh, run);
  EXPECT_EQ(block->counts, (std::vector<int64_t>{0, 0, 0, 0}));
  EXPECT_EQ(quiet.lines, (std::vector<std::string>(4, "")));
}

TEST(DemoTemporal, ABlockSwitchForgetsTheMemoryAndABlockWithoutStateSaysSo) {
  test::TempDir dir, other;
  auto first = std::make_shared<FrameCountingBlock>(), second = std::make_shared<FrameCountingBlock>();
  DemoModels models{read_experiment(Config::load([&] {
                      model_with("", dir);
                      return dir / "model.yaml";
                    }())),
                    Runtime{},
                    {{"none", "", model_around(first, dir)},
                     {"none", "", model_around(second, dir)},
                     {"ccnet", "", model_with("", other)}}};
  CutSource source(15, /*cut=*/100);
  MemoryView view;
  DemoControls controls;
  view.on_show = [&](const Segmented& f) {
    if (f.index == 2) controls.block = 1;
    if (f.index == 6) controls.block = 2;
    if (f.index == 9) controls.block = 1;
  };
  DemoRunOptions run;
  run.lossless = true;
  run.temporal = true;
  run_demo(models, source, view, controls, run);
  ASSERT_EQ(view.lines.size(), 15u);
  // Where each switch lands depends on how far ahead capture and inference are; the frame
  // after each switch says why the memory was forgotten.
  for (size_t i = 1; i < view.blocks.size(); ++i) {
    if (view.blocks[i] == view.blocks[i - 1]) continue;
    if (view.blocks[i] == 2) {
      EXPECT_EQ(view.lines[i], "memory: none (ccnet keeps no state across frames)") << i;
    } else {
      EXPECT_EQ(view.lines[i], "memory reset: block switch") << i;
    }
  }
  EXPECT_EQ(view.blocks.back(), 1);
  // Block 1 ran twice, with a reset between: its counts start again at 1.
  EXPECT_EQ(std::count(second->counts.begin(), second->counts.end(), 1), 2);
}

}  // namespace
}  // namespace attnseg
