// The leaderboard writer on a fixture: the Pareto front, the CSV and Markdown tables, label
// placement that never overlaps, and both pictures written as readable PNGs.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <sstream>

#include "engine/leaderboard.h"
#include "test_util.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

LeaderboardRow row(const std::string& block, std::vector<double> miou, double fps, int64_t block_macs) {
  LeaderboardRow r;
  r.block = block;
  r.miou = std::move(miou);
  r.class_names = {"background", "disc"};
  r.class_iou = {0.9, r.miou[0]};
  r.fps = fps;
  r.median_ms = 1000 / fps;
  r.p25_ms = r.median_ms * 0.98;
  r.p75_ms = r.median_ms * 1.03;
  r.model_parameters = 966000 + block_macs / 100;
  r.block_parameters = block_macs / 100;
  r.model_macs = 375000000 + block_macs;
  r.block_macs = block_macs;
  r.peak_bytes = 1500000;
  r.scaling = {{384, 0.5 + block_macs / 1e7}, {1536, 2 + block_macs / 1e6}, {6144, 9 + block_macs / 1e5}};
  r.time_exponent = 1.25;
  return r;
}

// Rows best mean mIoU first, as the sweep writes them. Two seeds each.
Leaderboard fixture() {
  Leaderboard b;
  b.config = "configs/x.yaml";
  b.overrides = "data.batch_size=4";
  b.resolution = {64, 384};
  b.feature = {8, 48};
  b.block_channels = 64;
  b.iterations = 2000;
  b.seeds = 2;
  b.rounds = 3;
  b.threads = 2;
  b.rows = {row("nonlocal", {0.95, 0.93}, 130, 13000000), row("ccnet", {0.93, 0.93}, 120, 7000000),
            row("gcnet", {0.92, 0.92}, 140, 1000000), row("isa", {0.90, 0.88}, 125, 13000000),
            row("none", {0.73, 0.73}, 150, 0)};
  return b;
}

TEST(Leaderboard, ParetoFrontHoldsTheRowsNoOtherBeatsOnBothAxes) {
  const Leaderboard b = fixture();
  // none is fastest; gcnet is the most accurate of those faster than nonlocal; nonlocal the most
  // accurate of all. ccnet (slower and worse than nonlocal) and isa are dominated.
  EXPECT_EQ(pareto_front(b.rows), (std::vector<size_t>{4, 2, 0}));
}

TEST(Leaderboard, MeanAndSampleSpreadOverSeeds) {
  EXPECT_DOUBLE_EQ(mean({0.95, 0.93}), 0.94);
  EXPECT_NEAR(spread({0.95, 0.93}), std::sqrt(2 * 0.01 * 0.01), 1e-12);
  EXPECT_EQ(spread({0.5}), 0);
}

TEST(Leaderboard, CsvHasOneRowPerBlockWithSeedsAndClasses) {
  std::istringstream csv(leaderboard_csv(fixture()));
  std::string header, line;
  std::getline(csv, header);
  EXPECT_NE(header.find("miou_mean,miou_std,seeds,miou_per_seed,fps"), std::string::npos) << header;
  EXPECT_NE(header.find("iou_background,iou_disc,note"), std::string::npos) << header;
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].rfind("1,nonlocal,0.940000,0.014142,2,0.950000;0.930000,130.000,", 0), 0u) << lines[0];
  EXPECT_EQ(lines[4].rfind("5,none,0.730000,0.000000,2,", 0), 0u) << lines[4];
  // Pareto column: nonlocal, gcnet and none on the front.
  for (size_t i : {0, 2, 4}) EXPECT_NE(lines[i].find(",1,0.9"), std::string::npos) << lines[i];
  for (size_t i : {1, 3}) EXPECT_NE(lines[i].find(",0,0.9"), std::string::npos) << lines[i];
}

TEST(Leaderboard, MarkdownShowsSpreadDeltaToNoneAndSizes) {
  const std::string md = leaderboard_markdown(fixture());
  EXPECT_NE(md.find("| 1 | nonlocal | 94.00 ± 1.41 | +21.00 | 130.0 | 7.69 (7.54-7.92) | 0.388 | 13.00 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 5 | none | 73.00 ± 0.00 | +0.00 | 150.0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("2 seeds (0..1; mIoU mean ± sample std)"), std::string::npos) << md;
  EXPECT_NE(md.find("data.batch_size=4"), std::string::npos) << md;
}

TEST(Leaderboard, LabelsNeverOverlapEachOtherOrAnyMarker) {
  // A tight cluster: twelve points within a 30-pixel square, labels of realistic size.
  std::vector<cv::Point> anchors;
  std::vector<cv::Size> sizes;
  for (int i = 0; i < 12; ++i) {
    anchors.push_back({400 + (i * 7) % 30, 300 + (i * 11) % 30});
    sizes.push_back({70 + 5 * i, 16});
  }
  const cv::Rect area(100, 50, 900, 600);
  const std::vector<cv::Rect> boxes = place_labels(anchors, sizes, area, 6);
  ASSERT_EQ(boxes.size(), anchors.size());
  for (size_t i = 0; i < boxes.size(); ++i) {
    EXPECT_EQ(boxes[i] & area, boxes[i]) << i;
    EXPECT_EQ(boxes[i].size(), sizes[i]);
    for (size_t j = 0; j < i; ++j) EXPECT_EQ((boxes[i] & boxes[j]).area(), 0) << i << " overlaps " << j;
    for (const auto& p : anchors) EXPECT_FALSE(boxes[i].contains(p)) << i;
  }
  // A wall right of every point: the labels go elsewhere.
  const std::vector<cv::Rect> walled = place_labels(anchors, sizes, area, 6, {cv::Rect(440, 50, 5, 600)});
  for (const auto& box : walled) EXPECT_EQ((box & cv::Rect(440, 50, 5, 600)).area(), 0) << box;
}

TEST(Leaderboard, PicturesAreWrittenAsPngs) {
  test::TempDir dir;
  const Leaderboard b = fixture();
  draw_leaderboard(b, dir / "leaderboard.png");
  draw_scaling(b, dir / "scaling.png");
  for (const char* name : {"leaderboard.png", "scaling.png"}) {
    const cv::Mat image = cv::imread((dir / name).string());
    ASSERT_FALSE(image.empty()) << name;
    EXPECT_EQ(image.cols, 1100);
    EXPECT_EQ(image.rows, 720);
  }
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace attnseg
