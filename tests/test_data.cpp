// The synthetic dataset's rules, the folder dataset's bad inputs, transforms and the loader.
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <set>

#include "core/error.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "data/transforms.h"
#include "engine/experiment.h"
#include "test_util.h"

namespace attnseg {
namespace {

using test::TempDir;
using test::write_file;

TEST(Synthetic, SameSeedSameScene) {
  const SynthScene a = make_synthetic_scene(64, 3, "train", 5);
  const SynthScene b = make_synthetic_scene(64, 3, "train", 5);
  const SynthScene c = make_synthetic_scene(64, 3, "train", 6);
  EXPECT_EQ(cv::norm(a.image, b.image, cv::NORM_L1), 0);
  EXPECT_EQ(cv::norm(a.mask, b.mask, cv::NORM_L1), 0);
  EXPECT_GT(cv::norm(a.image, c.image, cv::NORM_L1), 0);
}

// The rule that makes the dataset need long-range context: every disc pixel is at least
// 3.75 times the scene height from the beacon, and its class follows the beacon's colour alone.
double disc_to_beacon_distance(const SynthScene& s) {
  const cv::Mat beacon = (s.mask == 1) | (s.mask == 2);
  const cv::Mat discs = (s.mask == 4) | (s.mask == 5);
  cv::Mat dist;
  cv::distanceTransform(~beacon, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE);
  double min_dist;
  cv::minMaxLoc(dist, &min_dist, nullptr, nullptr, nullptr, discs);
  return min_dist;
}

TEST(Synthetic, DiscClassFollowsTheFarBeacon) {
  const int64_t size = 37;  // odd on purpose
  int warm = 0, cool = 0;
  for (int64_t i = 0; i < 60; ++i) {
    const SynthScene s = make_synthetic_scene(size, 0, "val", i);
    ASSERT_EQ(s.image.size(), cv::Size(6 * size, size));
    // classes: 0 background, 1 beacon_warm, 2 beacon_cool, 3 box, 4 disc_warm, 5 disc_cool
    ASSERT_GT(cv::countNonZero(s.mask == (s.warm ? 1 : 2)), 0);
    ASSERT_EQ(cv::countNonZero(s.mask == (s.warm ? 2 : 1)), 0);
    EXPECT_EQ(cv::countNonZero(s.mask == (s.warm ? 5 : 4)), 0) << "scene " << i;
    ASSERT_GT(cv::countNonZero(s.mask == (s.warm ? 4 : 5)), 0) << "scene " << i;
    (s.warm ? warm : cool)++;
    EXPECT_GE(disc_to_beacon_distance(s), 3.75 * size - 1) << "scene " << i;
  }
  EXPECT_GT(warm, 15);
  EXPECT_GT(cool, 15);
}

// At the default scene height the beacon lies outside the receptive field of the default
// model's convolutions (backbone, head and upsampling) seen from any disc pixel: without
// attention, no weight setting can make a disc's prediction depend on the beacon.
TEST(Synthetic, BeaconIsBeyondTheDefaultModelsConvolutionalReach) {
  const Config c = Config::load(ATTNSEG_SOURCE_DIR "/configs/none_r18_synthetic.yaml");
  const Segmentor model = build_model(read_experiment(c));
  const int64_t radius = (model->conv_receptive_field() - 1) / 2;
  double nearest = 1e9;
  for (int64_t i = 0; i < 40; ++i) {
    nearest = std::min(nearest, disc_to_beacon_distance(make_synthetic_scene(SynthOptions{}.size, 0, "val", i)));
  }
  EXPECT_GT(nearest, radius) << "receptive field " << model->conv_receptive_field();
}

// The same, measured rather than computed: the gradient of a disc-side output pixel of the
// attention-free model with respect to the beacon's pixels is exactly zero.
TEST(Synthetic, NoGradientFromTheBeaconWithoutAttention) {
  const Config c = Config::load(ATTNSEG_SOURCE_DIR "/configs/none_r18_synthetic.yaml");
  Segmentor model = build_model(read_experiment(c));
  model->eval();
  const int64_t h = SynthOptions{}.size, w = kSynthWidthFactor * h;
  const at::Tensor image = torch::randn({1, 3, h, w}, torch::requires_grad());
  model->predict(image).select(2, h / 2).select(2, w - 1 - h / 2).sum().backward();
  const at::Tensor reach = image.grad().abs().sum(at::IntArrayRef{0, 1}) > 0;  // [h, w]
  // The left beacon band [0, h) and everything up to 3.75·h from the output's column.
  EXPECT_FALSE(reach.slice(1, 0, h).any().item<bool>());
  EXPECT_TRUE(reach.slice(1, w - h, w).any().item<bool>());
}

TEST(Synthetic, DiscsLookTheSameWhicheverTheirClass) {
  // Mean disc colour must not reveal the class: compare warm and cool scenes.
  double sum[2] = {0, 0};
  int n[2] = {0, 0};
  for (int64_t i = 0; i < 40; ++i) {
    const SynthScene s = make_synthetic_scene(64, 1, "train", i);
    const cv::Mat discs = (s.mask == 4) | (s.mask == 5);
    sum[s.warm] += cv::mean(s.image, discs)[2];
    ++n[s.warm];
  }
  EXPECT_NEAR(sum[0] / n[0], sum[1] / n[1], 6.0);
}

TEST(Synthetic, WritesTheFolderLayout) {
  TempDir dir;
  write_synthetic_dataset(dir.path(), {/*train=*/3, /*val=*/2, /*size=*/40, /*seed=*/0});
  FolderDatasetOptions o{dir.path(), "train.txt"};
  o.num_classes = 6;
  FolderDataset train(o);
  ASSERT_EQ(train.size(), 3u);
  const Sample s = train.load(2);
  EXPECT_EQ(s.image.size(), cv::Size(240, 40));
  EXPECT_EQ(s.mask.type(), CV_8UC1);
  for (const auto& e : std::filesystem::directory_iterator(dir / "images")) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  }
  EXPECT_THROW(write_synthetic_dataset(dir.path(), {0, 2, 40, 0}), Error);
  EXPECT_THROW(write_synthetic_dataset(dir.path(), {2, 2, -5, 0}), Error);
}

// The names under `dir`, recursively, relative to it.
std::set<std::string> tree(const std::filesystem::path& dir) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    names.insert(std::filesystem::relative(e.path(), dir).string());
  }
  return names;
}

// A beacon set written where a reach set was keeps nothing of it: no regions (eval would
// score the new scenes by the old scenes' distance bins) and no scene beyond the new count.
TEST(Synthetic, ASecondRunReplacesTheDatasetWholeKeepingNoSceneOrRegionOfTheFirst) {
  TempDir parent;
  const std::filesystem::path out = parent / "set";
  SynthOptions reach{/*train=*/3, /*val=*/2, /*size=*/24, /*seed=*/0};
  reach.task = "reach";
  EXPECT_FALSE(write_synthetic_dataset(out, reach));
  ASSERT_TRUE(std::filesystem::exists(out / "regions.txt"));
  EXPECT_TRUE(write_synthetic_dataset(out.string() + "/", {/*train=*/2, /*val=*/1, /*size=*/32, /*seed=*/5}));
  EXPECT_EQ(tree(out), (std::set<std::string>{"images", "images/train_00000.png", "images/train_00001.png",
                                               "images/val_00000.png", "masks", "masks/train_00000.png",
                                               "masks/train_00001.png", "masks/val_00000.png", "train.txt",
                                               "val.txt"}));
  EXPECT_EQ(test::read_file(out / "train.txt"), "train_00000\ntrain_00001\n");
  const cv::Mat image = cv::imread((out / "images" / "val_00000.png").string(), cv::IMREAD_COLOR);
  EXPECT_EQ(cv::norm(image, make_synthetic_scene(32, 5, "val", 0).image, cv::NORM_L1), 0);
  EXPECT_TRUE(test::stages_beside(out).empty()) << test::stages_beside(out).front();
}

TEST(Synthetic, ADirectoryHoldingOtherFilesIsRefusedNamingOneAndLeftAsItWas) {
  TempDir dir;
  write_file(dir / "notes.txt", "mine\n");
  try {
    write_synthetic_dataset(dir.path(), {2, 1, 24, 0});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 'notes.txt'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(tree(dir.path()), std::set<std::string>{"notes.txt"});
  EXPECT_TRUE(test::stages_beside(dir.path()).empty()) << test::stages_beside(dir.path()).front();
  write_file(dir / "file", "");
  EXPECT_THROW(write_synthetic_dataset(dir / "file", {2, 1, 24, 0}), Error);
}

// A stage whose run is dead (pid 999999999 is above any pid_max) is removed; a live run's
// (this process's, with a counter it will not reach) is left to it.
TEST(Synthetic, AStageOfADeadRunIsRemovedAndALiveRunsIsLeft) {
  TempDir parent;
  const std::filesystem::path out = parent / "set";
  const std::filesystem::path dead = parent / ".set.999999999-0.tmp",
                              live = parent / (".set." + std::to_string(::getpid()) + "-999999.tmp");
  for (const auto& stage : {dead, live}) {
    std::filesystem::create_directories(stage / "images");
    write_file(stage / "images" / "train_00000.png", "half");
  }
  write_synthetic_dataset(out, {2, 1, 24, 0});
  EXPECT_FALSE(std::filesystem::exists(dead));
  EXPECT_TRUE(std::filesystem::exists(live / "images" / "train_00000.png"));
  EXPECT_EQ(tree(out).count("images/train_00001.png"), 1u);
}

// --- the reach family ----------------------------------------------------------------------

// L∞ distance from pixel (x, y) to the rectangle's pixels.
int chebyshev(int x, int y, const cv::Rect& r) {
  const int dx = std::max({r.x - x, x - (r.x + r.width - 1), 0});
  const int dy = std::max({r.y - y, y - (r.y + r.height - 1), 0});
  return std::max(dx, dy);
}

// Classes: 0 background, 1 key_checker, 2 key_stripes, 3 lamp, 4 tri_checker, 5 tri_stripes.
TEST(Reach, EveryTrianglePixelLiesInItsDistanceBinAndTheBinsAreTheTriangles) {
  for (const int64_t size : {16, 37, 64}) {
    const std::vector<int> edges = reach_bin_edges(size);
    ASSERT_EQ(edges.size(), 5u);
    for (int64_t i = 0; i < 30; ++i) {
      const ReachScene s = make_reach_scene(size, 0, "train", i);
      ASSERT_EQ(s.image.size(), cv::Size(8 * static_cast<int>(size), static_cast<int>(size)));
      // The key as the mask holds it, not as the generator says.
      const cv::Mat key = (s.mask == 1) | (s.mask == 2);
      const cv::Rect box = cv::boundingRect(key);
      ASSERT_EQ(cv::countNonZero(key), box.area()) << "the key is a filled rectangle";
      const cv::Mat triangles = (s.mask == 4) | (s.mask == 5);
      EXPECT_EQ(cv::countNonZero(triangles != (s.regions > 0)), 0) << "regions are exactly the triangles";
      std::vector<int> seen(5, 0);
      for (int y = 0; y < s.regions.rows; ++y) {
        for (int x = 0; x < s.regions.cols; ++x) {
          const int bin = s.regions.at<uint8_t>(y, x);
          if (bin == 0) continue;
          ASSERT_LE(bin, 4);
          ++seen[bin];
          const int d = chebyshev(x, y, box);
          ASSERT_GE(d, edges[bin - 1]) << "size " << size << " scene " << i << " bin " << bin;
          ASSERT_LT(d, edges[bin]) << "size " << size << " scene " << i << " bin " << bin;
        }
      }
      for (int bin = 1; bin <= 4; ++bin) EXPECT_GT(seen[bin], 0) << "size " << size << " scene " << i << " bin " << bin;
    }
  }
}

TEST(Reach, TriangleClassFollowsTheKeyTextureAloneAndBothLookAlike) {
  int checker = 0, stripes = 0;
  double tri_mean[2] = {0, 0}, key_mean[2] = {0, 0};
  for (int64_t i = 0; i < 60; ++i) {
    const ReachScene s = make_reach_scene(41, 2, "val", i);
    const int own_key = s.checker ? 1 : 2, own_tri = s.checker ? 4 : 5;
    ASSERT_GT(cv::countNonZero(s.mask == own_key), 0);
    EXPECT_EQ(cv::countNonZero(s.mask == 3 - own_key), 0) << "scene " << i;
    ASSERT_GT(cv::countNonZero(s.mask == own_tri), 0);
    EXPECT_EQ(cv::countNonZero(s.mask == 9 - own_tri), 0) << "scene " << i;
    EXPECT_GT(cv::countNonZero(s.mask == 3), 0) << "every scene has a lamp, the local class";
    tri_mean[s.checker] += cv::mean(s.image, s.mask == own_tri)[1];
    key_mean[s.checker] += cv::mean(s.image, s.mask == own_key)[1];
    (s.checker ? checker : stripes)++;
  }
  ASSERT_GT(checker, 15);
  ASSERT_GT(stripes, 15);
  // Neither the triangles nor the key's mean colour tell the two apart: only the key's texture does.
  EXPECT_NEAR(tri_mean[1] / checker, tri_mean[0] / stripes, 5.0);
  EXPECT_NEAR(key_mean[1] / checker, key_mean[0] / stripes, 8.0);
}

// With the default model and scene height, the far bin lies beyond the receptive field of
// the convolutions, and the attention-free model's outputs on those triangles get exactly zero
// gradient from the key; from the nearest bin they get some.
TEST(Reach, NoGradientFromTheKeyToTrianglesBeyondTheConvolutionalReach) {
  const Config c = Config::load(ATTNSEG_SOURCE_DIR "/configs/quick_sweep_r18_reach.yaml", {"model.attention.type=none"});
  Segmentor model = build_model(read_experiment(c));
  model->eval();
  const int64_t radius = (model->conv_receptive_field() - 1) / 2;
  const std::vector<int> edges = reach_bin_edges(SynthOptions{}.size);
  ASSERT_GT(edges[3], radius) << "receptive field " << model->conv_receptive_field();
  const ReachScene s = make_reach_scene(SynthOptions{}.size, 0, "val", 3);
  const at::Tensor image = torch::randn({1, 3, s.image.rows, s.image.cols}, torch::requires_grad());
  const at::Tensor logits = model->predict(image);
  auto key_gradient = [&](int bin) {
    const at::Tensor region = torch::from_blob(s.regions.data, {s.regions.rows, s.regions.cols}, torch::kUInt8)
                                  .eq(bin).to(torch::kFloat);
    image.mutable_grad() = at::Tensor();
    (logits * region).sum().backward({}, /*retain_graph=*/true);
    return image.grad().abs().sum(0).sum(0).slice(0, s.key.y, s.key.y + s.key.height)
        .slice(1, s.key.x, s.key.x + s.key.width).sum().item<double>();
  };
  EXPECT_EQ(key_gradient(4), 0.0);
  EXPECT_GT(key_gradient(1), 0.0);
}

TEST(Reach, WritesRegionMapsAndTheirNames) {
  TempDir dir;
  SynthOptions o{/*train=*/2, /*val=*/1, /*size=*/24, /*seed=*/0};
  o.task = "reach";
  write_synthetic_dataset(dir.path(), o);
  EXPECT_EQ(test::read_file(dir / "regions.txt"), "6-24 px\n24-60 px\n60-120 px\n120-156 px\n");
  const cv::Mat regions = cv::imread((dir / "regions" / "val_00000.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(regions.type(), CV_8UC1);
  EXPECT_EQ(regions.size(), cv::Size(192, 24));
  EXPECT_EQ(cv::norm(regions, make_reach_scene(24, 0, "val", 0).regions, cv::NORM_L1), 0);
  o.task = "stripes";
  EXPECT_THROW(write_synthetic_dataset(dir.path(), o), Error);
}

// --- folder dataset: each bad input names its file -------------------------------------------

class BadData : public ::testing::Test {
 protected:
  void SetUp() override {
    write_synthetic_dataset(dir.path(), {2, 1, 32, 0});
    options.root = dir.path();
    options.split = "train.txt";
    options.num_classes = 6;
  }
  std::string load_error() {
    try {
      FolderDataset d(options);
      for (size_t i = 0; i < d.size(); ++i) d.load(i);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  TempDir dir;
  FolderDatasetOptions options;
};

TEST_F(BadData, CleanDataLoads) { EXPECT_EQ(load_error(), "(no error)"); }

TEST_F(BadData, MissingImage) {
  std::filesystem::remove(dir / "images/train_00001.png");
  EXPECT_NE(load_error().find("images/train_00001.png"), std::string::npos);
}

TEST_F(BadData, CorruptImage) {
  write_file(dir / "images/train_00000.png", "this is not a png");
  const std::string m = load_error();
  EXPECT_NE(m.find("cannot read image"), std::string::npos) << m;
  EXPECT_NE(m.find("train_00000.png"), std::string::npos) << m;
}

TEST_F(BadData, MaskOfAnotherSize) {
  cv::imwrite((dir / "masks/train_00001.png").string(), cv::Mat(31, 32, CV_8UC1, cv::Scalar(0)));
  const std::string m = load_error();
  EXPECT_NE(m.find("masks/train_00001.png is 32x31 but its image is 192x32"), std::string::npos) << m;
}

TEST_F(BadData, MaskValueOutsideTheClasses) {
  cv::Mat mask(32, 192, CV_8UC1, cv::Scalar(0));
  mask.at<uint8_t>(3, 7) = 9;
  mask.at<uint8_t>(4, 4) = 255;  // ignore is fine
  cv::imwrite((dir / "masks/train_00000.png").string(), mask);
  const std::string m = load_error();
  EXPECT_NE(m.find("holds label 9 at (7, 3)"), std::string::npos) << m;
  EXPECT_NE(m.find("train_00000.png"), std::string::npos) << m;
}

TEST_F(BadData, ColourMaskIsRejectedByName) {
  cv::imwrite((dir / "masks/train_00000.png").string(), cv::Mat(32, 192, CV_8UC3, cv::Scalar(0, 0, 0)));
  const std::string m = load_error();
  EXPECT_NE(m.find("single-channel"), std::string::npos) << m;
  EXPECT_NE(m.find("masks/train_00000.png"), std::string::npos) << m;
}

TEST_F(BadData, EmptySplit) {
  write_file(dir / "train.txt", "\n\n");
  const std::string m = load_error();
  EXPECT_NE(m.find("train.txt lists no samples"), std::string::npos) << m;
}

TEST_F(BadData, MissingSplitAndRoot) {
  options.split = "nope.txt";
  EXPECT_NE(load_error().find("nope.txt"), std::string::npos);
  options.root = dir / "absent";
  EXPECT_NE(load_error().find("absent does not exist"), std::string::npos);
}

// --- transforms ------------------------------------------------------------------------------

Sample gradient_sample(int h, int w) {
  Sample s;
  s.image = cv::Mat(h, w, CV_8UC3);
  s.mask = cv::Mat(h, w, CV_8UC1);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      s.image.at<cv::Vec3b>(y, x) = cv::Vec3b(x % 256, y % 256, 100);
      s.mask.at<uint8_t>(y, x) = static_cast<uint8_t>((x / 8 + y / 8) % 3);
    }
  }
  return s;
}

TEST(Transforms, CropPadsImageWithZeroAndMaskWithIgnore) {
  Sample s = gradient_sample(20, 30);
  Rng rng(1);
  random_crop(s, {25, 40}, rng);
  EXPECT_EQ(s.image.size(), cv::Size(40, 25));
  // the pad is right and bottom; the crop offset is 0 because there is no slack
  EXPECT_EQ(s.mask.at<uint8_t>(24, 39), 255);
  EXPECT_EQ(s.image.at<cv::Vec3b>(24, 39), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(cv::countNonZero(s.mask(cv::Rect(0, 0, 30, 20)) == 255), 0);
}

// 8x8 blocks cycling through three labels (two classes and ignore) in the mask, and in the
// image a colour of each label's own: a pixel whose colour is not its label's colour shows
// image and mask out of step there.
constexpr std::array<uint8_t, 3> kBlockLabels{1, 4, 255};
const std::array<cv::Vec3b, 3> kBlockColours{cv::Vec3b(200, 40, 40), cv::Vec3b(40, 200, 40), cv::Vec3b(40, 40, 200)};

int block_of(int y, int x) { return (x / 8 + y / 8) % 3; }

Sample labelled_blocks(int h, int w) {
  Sample s;
  s.image = cv::Mat(h, w, CV_8UC3);
  s.mask = cv::Mat(h, w, CV_8UC1);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      s.image.at<cv::Vec3b>(y, x) = kBlockColours[static_cast<size_t>(block_of(y, x))];
      s.mask.at<uint8_t>(y, x) = kBlockLabels[static_cast<size_t>(block_of(y, x))];
    }
  }
  return s;
}

Sample resized(const Sample& source, double ratio) {
  Sample s{source.image.clone(), source.mask.clone(), ""};
  TrainPipelineOptions o;
  o.ratio_range = {ratio, ratio};
  Rng rng(2);
  random_resize(s, o, rng);
  return s;
}

TEST(Transforms, ResizeKeepsExactlyTheMasksLabels) {
  // Nearest neighbour invents no label (interpolating 1, 4 and 255 would) and loses none.
  const Sample source = labelled_blocks(37, 53);
  for (const auto& [ratio, size] : {std::pair{1.5, cv::Size(80, 56)}, std::pair{0.75, cv::Size(40, 28)}}) {
    const Sample s = resized(source, ratio);
    ASSERT_EQ(s.image.size(), size) << ratio;
    ASSERT_EQ(s.mask.size(), size) << ratio;
    std::set<int> labels;
    for (int y = 0; y < s.mask.rows; ++y) {
      for (int x = 0; x < s.mask.cols; ++x) labels.insert(s.mask.at<uint8_t>(y, x));
    }
    EXPECT_EQ(labels, (std::set<int>{1, 4, 255})) << "ratio " << ratio;
  }
}

// The source rows (or columns) that bilinear resizing from n to m reads for output index i:
// the output pixel's centre maps to c = (i + 0.5)·n/m - 0.5, read at floor(c) and, when c is
// not a whole number, at floor(c) + 1, both clamped to the image.
std::vector<int> bilinear_reads(int i, int n, int m) {
  const double c = (i + 0.5) * n / m - 0.5;
  const int lo = static_cast<int>(std::floor(c));
  std::vector<int> reads{std::clamp(lo, 0, n - 1)};
  if (c > lo) reads.push_back(std::clamp(lo + 1, 0, n - 1));
  return reads;
}

// Resizes labelled_blocks(37, 53) by `ratio` and checks that image and mask agree at every
// pixel whose bilinear footprint (the source pixels its colour is mixed from) lies in one
// block: its colour is that block's and its label is that block's. Only pixels whose footprint
// straddles a block edge may disagree. Their number is bounded without looking at the
// output: an edge between source columns b-1 and b is straddled only by outputs with c in
// (b-1, b), an interval of one source column, m/n output columns wide, so by at most
// ceil(m/n) of them per edge and row; rows likewise.
void expect_image_and_mask_aligned(double ratio) {
  const int h = 37, w = 53;
  const Sample s = resized(labelled_blocks(h, w), ratio);
  const int oh = s.image.rows, ow = s.image.cols;
  ASSERT_EQ(s.mask.size(), s.image.size());
  const int column_edges = (w - 1) / 8, row_edges = (h - 1) / 8;  // at 8, 16, ... inside the image
  const int64_t bound = static_cast<int64_t>(std::ceil(double(ow) / w)) * column_edges * oh +
                        static_cast<int64_t>(std::ceil(double(oh) / h)) * row_edges * ow;
  int64_t straddling = 0, disagreeing = 0;
  for (int y = 0; y < oh; ++y) {
    for (int x = 0; x < ow; ++x) {
      std::set<int> blocks;
      for (int sy : bilinear_reads(y, h, oh)) {
        for (int sx : bilinear_reads(x, w, ow)) blocks.insert(block_of(sy, sx));
      }
      if (blocks.size() > 1) {
        ++straddling;
        continue;
      }
      const size_t block = static_cast<size_t>(*blocks.begin());
      const bool agree = s.image.at<cv::Vec3b>(y, x) == kBlockColours[block] &&
                         s.mask.at<uint8_t>(y, x) == kBlockLabels[block];
      if (!agree && ++disagreeing <= 5) {
        ADD_FAILURE() << "ratio " << ratio << ": pixel (" << x << ", " << y << ") of block " << block
                      << " has colour " << s.image.at<cv::Vec3b>(y, x) << " and label "
                      << int(s.mask.at<uint8_t>(y, x));
      }
    }
  }
  EXPECT_EQ(disagreeing, 0) << "ratio " << ratio << ": pixels off every block edge where image and mask disagree";
  EXPECT_LE(straddling, bound) << "ratio " << ratio;
  EXPECT_GT(straddling, 0) << "ratio " << ratio << ": the blocks' edges were crossed";
}

TEST(Transforms, EnlargingKeepsImageAndMaskAligned) {
  expect_image_and_mask_aligned(1.5);   // 53x37 to 80x56
  expect_image_and_mask_aligned(1.25);  // to 66x46
}

TEST(Transforms, FlipMovesImageAndMaskTogether) {
  Sample s = gradient_sample(9, 11);
  const Sample before{s.image.clone(), s.mask.clone(), ""};
  Rng rng(3);
  random_flip(s, 1.0, rng);
  EXPECT_EQ(s.image.at<cv::Vec3b>(2, 0), before.image.at<cv::Vec3b>(2, 10));
  EXPECT_EQ(s.mask.at<uint8_t>(5, 1), before.mask.at<uint8_t>(5, 9));
}

TEST(Transforms, PhotometricChangesPixelsNotShape) {
  Sample s = gradient_sample(16, 16);
  const cv::Mat before = s.image.clone();
  bool changed = false;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    cv::Mat img = before.clone();
    Rng rng(seed);
    photometric_distortion(img, rng);
    EXPECT_EQ(img.size(), before.size());
    changed |= cv::norm(img, before, cv::NORM_L1) > 0;
  }
  EXPECT_TRUE(changed);
}

TEST(Transforms, NormalisationUsesMeanAndStd) {
  cv::Mat img(2, 3, CV_8UC3, cv::Scalar(10, 20, 30));
  Normalization n;
  n.mean = {10, 10, 10};
  n.std = {2, 4, 5};
  const at::Tensor t = image_to_tensor(img, n);
  EXPECT_EQ(t.sizes(), (at::IntArrayRef{3, 2, 3}));
  EXPECT_FLOAT_EQ(t[0][1][2].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(t[1][0][0].item<float>(), 2.5f);
  EXPECT_FLOAT_EQ(t[2][1][1].item<float>(), 4.0f);
}

// --- loader ----------------------------------------------------------------------------------

TEST(Loader, EachEpochIsAPermutation) {
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<size_t> seen;
    for (int64_t p = 0; p < 17; ++p) seen.insert(sample_index(17, 9, epoch * 17 + p));
    EXPECT_EQ(seen.size(), 17u);
  }
  EXPECT_NE(sample_index(17, 9, 0) * 100 + sample_index(17, 9, 1),
            sample_index(17, 9, 17) * 100 + sample_index(17, 9, 18));
}

TEST(Loader, PrefetcherKeepsOrderAndRethrows) {
  Prefetcher<int64_t> p(
      [](int64_t k) {
        if (k == 5) throw Error("bad item 5");
        return k * k;
      },
      2, 8, /*workers=*/3, /*depth=*/4);
  EXPECT_EQ(p.next(), 4);
  EXPECT_EQ(p.next(), 9);
  EXPECT_EQ(p.next(), 16);
  EXPECT_THROW(p.next(), Error);
  EXPECT_EQ(p.next(), 36);
  EXPECT_EQ(p.next(), 49);
  EXPECT_TRUE(p.done());
}

// The workers fill the window of `depth` items ahead of the consumer and go no further: no
// item is made `depth` or more ahead of the next() calls begun so far, and before each
// next() the whole window is made without the consumer asking (bounded by a generous
// timeout only so that a prefetcher that never runs ahead fails instead of hanging).
TEST(Loader, PrefetcherFillsItsDepthAheadAndNeverMore) {
  constexpr int64_t items = 40;
  constexpr int depth = 3;
  std::mutex m;
  std::condition_variable made_one;
  int64_t made = 0, asked = 0, furthest_ahead = -1;
  Prefetcher<int64_t> p(
      [&](int64_t k) {
        const std::lock_guard<std::mutex> lock(m);
        furthest_ahead = std::max(furthest_ahead, k - asked);
        ++made;
        made_one.notify_all();
        return k;
      },
      0, items, /*workers=*/2, depth);
  for (int64_t i = 0; i < items; ++i) {
    {
      std::unique_lock<std::mutex> lock(m);
      const int64_t window = std::min(items, i + depth);  // items i .. i + depth - 1
      ASSERT_TRUE(made_one.wait_for(lock, std::chrono::seconds(20), [&] { return made >= window; }))
          << made << " items made, not the " << window << " that fill the window before next() number " << i;
      ++asked;  // before next() moves the window on
    }
    EXPECT_EQ(p.next(), i);
  }
  const std::lock_guard<std::mutex> lock(m);
  EXPECT_EQ(made, items);
  EXPECT_EQ(furthest_ahead, depth - 1) << "items made that far ahead of the consumer";
}

TEST(Loader, TrainBatchIsAFunctionOfSeedAndIteration) {
  TempDir dir;
  write_synthetic_dataset(dir.path(), {5, 1, 24, 0});
  FolderDatasetOptions o{dir.path(), "train.txt"};
  o.num_classes = 6;
  FolderDataset d(o);
  TrainPipelineOptions pipe;
  pipe.crop_size = {40, 40};
  const Batch a = make_train_batch(d, pipe, {}, 3, 7, 4);
  const Batch b = make_train_batch(d, pipe, {}, 3, 7, 4);
  const Batch c = make_train_batch(d, pipe, {}, 3, 7, 5);
  EXPECT_EQ(a.images.sizes(), (at::IntArrayRef{3, 3, 40, 40}));
  EXPECT_EQ(a.labels.sizes(), (at::IntArrayRef{3, 40, 40}));
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_TRUE(torch::equal(a.labels, b.labels));
  EXPECT_FALSE(torch::equal(a.images, c.images));
}

// A data-parallel job's ranks read disjoint shares of each global batch that together are
// exactly the one-process batch, in order, none repeated; also when the batch does not
// divide by the number of ranks.
TEST(Loader, TheRanksShardsTogetherAreExactlyTheOneProcessBatch) {
  TempDir dir;
  write_synthetic_dataset(dir.path(), {9, 1, 24, 0});
  FolderDatasetOptions o{dir.path(), "train.txt"};
  o.num_classes = 6;
  FolderDataset d(o);
  TrainPipelineOptions pipe;
  pipe.crop_size = {24, 40};
  for (const auto& [batch, world] : std::vector<std::pair<int64_t, int>>{{6, 2}, {7, 3}, {5, 5}}) {
    const Batch whole = make_train_batch(d, pipe, {}, batch, 3, 2);
    std::vector<at::Tensor> images, labels;
    for (int rank = 0; rank < world; ++rank) {
      const Batch shard = make_train_batch(d, pipe, {}, batch, 3, 2, rank, world);
      EXPECT_GE(shard.images.size(0), batch / world);
      EXPECT_LE(shard.images.size(0), batch / world + 1);
      images.push_back(shard.images);
      labels.push_back(shard.labels);
    }
    EXPECT_TRUE(torch::equal(at::cat(images), whole.images)) << batch << " on " << world;
    EXPECT_TRUE(torch::equal(at::cat(labels), whole.labels)) << batch << " on " << world;
    for (int64_t i = 0; i < batch; ++i) {  // no sample twice (distinct augmentations differ)
      for (int64_t j = i + 1; j < batch; ++j) EXPECT_FALSE(torch::equal(whole.images[i], whole.images[j]));
    }
  }
  EXPECT_THROW(make_train_batch(d, pipe, {}, 2, 3, 0, 0, 3), c10::Error) << "fewer samples than ranks";
  EXPECT_THROW(make_train_batch(d, pipe, {}, 4, 3, 0, 2, 2), c10::Error) << "rank outside the job";
}

}  // namespace
}  // namespace attnseg
