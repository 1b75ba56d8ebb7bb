// The leaderboard writer on a fixture: the Pareto front, the CSV and Markdown tables, label
// placement that never overlaps, and both pictures written as readable PNGs.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <tuple>
#include <utility>

#include "engine/leaderboard.h"
#include "engine/plot.h"
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
  // Pareto column, then the tie rank: nonlocal, gcnet and none on the front; nonlocal and
  // ccnet tied (0.01 apart, nonlocal's std 0.014); then learned at, ERF and cue (none here).
  const std::vector<std::string> tail{",1,1=,,,,0.9", ",0,1=,,,,0.9", ",1,3,,,,0.9", ",0,4,,,,0.9", ",1,5,,,,0.9"};
  for (size_t i = 0; i < 5; ++i) EXPECT_NE(lines[i].find(tail[i]), std::string::npos) << lines[i];
}

TEST(Leaderboard, RowsWithinTheSeedSpreadShareARank) {
  const Leaderboard b = fixture();
  // nonlocal 0.94 ± 0.014 and ccnet 0.93 ± 0: 0.01 apart, under the larger spread: tied.
  // gcnet 0.92 is 0.01 under ccnet, whose spread and gcnet's are 0: ccnet beats it, as
  // does nonlocal (0.02 ≥ 0.014). isa 0.89 ± 0.014 is beaten by all three above it.
  EXPECT_EQ(tie_ranks(b.rows), (std::vector<std::string>{"1=", "1=", "3", "4", "5"}));
  // With one seed there is no spread: every row its own place, equal means in table order.
  std::vector<LeaderboardRow> one{row("a", {0.9}, 100, 0), row("b", {0.9}, 100, 0), row("c", {0.8}, 100, 0)};
  EXPECT_EQ(tie_ranks(one), (std::vector<std::string>{"1", "2", "3"}));
  // A wide spread ties everything it reaches, and only that.
  std::vector<LeaderboardRow> wide{row("a", {0.95, 0.75}, 100, 0), row("b", {0.84, 0.84}, 100, 0),
                                   row("c", {0.50, 0.50}, 100, 0)};
  EXPECT_EQ(tie_ranks(wide), (std::vector<std::string>{"1=", "1=", "3"}));
}

TEST(Leaderboard, RowsAreOrderedByTieRankThenMeanSoTheRankNeverFallsDownTheTable) {
  // The recorded beacon sweep's shape: a wide-spread row (one seed of three did not learn)
  // ties with the best, and steady rows below it beat each other by their small spreads.
  std::vector<LeaderboardRow> rows{row("steady3", {0.9410, 0.9400, 0.9390}, 100, 0),
                                   row("wide", {0.94, 0.94, 0.72}, 100, 0),
                                   row("best", {0.9450, 0.9448, 0.9446}, 100, 0),
                                   row("steady2", {0.9430, 0.9428, 0.9426}, 100, 0),
                                   row("none", {0.60, 0.59, 0.61}, 100, 0)};
  order_rows(rows);
  std::vector<std::string> names;
  for (const auto& r : rows) names.push_back(r.block);
  EXPECT_EQ(names, (std::vector<std::string>{"best", "wide", "steady2", "steady3", "none"}));
  const std::vector<std::string> ranks = tie_ranks(rows);
  EXPECT_EQ(ranks, (std::vector<std::string>{"1=", "1=", "2", "3", "5"}));
  // One seed: the mean alone orders, equal means keep their given order.
  std::vector<LeaderboardRow> one{row("c", {0.8}, 100, 0), row("a", {0.9}, 100, 0), row("b", {0.9}, 100, 0)};
  order_rows(one);
  EXPECT_EQ(one[0].block + one[1].block + one[2].block, "abc");
}

TEST(Leaderboard, LearnedAtIsTheMedianOverTheSeedsThatLearned) {
  Leaderboard b = fixture();
  b.eval_interval = 250;
  b.context_classes = {"disc"};
  b.learned_iou = 0.8;
  b.rows[0].learned_at = {500, 1000};
  b.rows[1].learned_at = {750, -1};
  b.rows[2].learned_at = {-1, -1};
  const std::string md = leaderboard_markdown(b);
  EXPECT_NE(md.find("| nonlocal | 94.00 ± 1.41 | +21.00 | 750 | 130.0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| ccnet | 93.00 ± 0.00 | +20.00 | 750 (1/2) | "), std::string::npos) << md;
  EXPECT_NE(md.find("| gcnet | 92.00 ± 0.00 | +19.00 | never | "), std::string::npos) << md;
  EXPECT_NE(md.find("| isa | 89.00 ± 1.41 | +16.00 | - | "), std::string::npos) << md;
  EXPECT_NE(md.find("every 250 iterations) where disc reaches 80% IoU"), std::string::npos) << md;
  const std::string csv = leaderboard_csv(b);
  EXPECT_NE(csv.find(",750;-1,"), std::string::npos) << csv;
}

TEST(LearningCurve, ReadsTheValidationPointsInIterationOrderAndSkipsLossLines) {
  const test::TempDir dir;
  const fs::path file = dir / "metrics.jsonl";
  {
    std::ofstream out(file);
    out << R"({"iter": 20, "loss": 0.9})" << "\n"
        << R"({"iter": 500, "val_mIoU": 0.8, "val_IoU": {"background": 0.9, "disc": 0.81}})" << "\n"
        << R"({"iter": 250, "val_mIoU": 0.5, "val_IoU": {"background": 0.9, "disc": null}})" << "\n"
        << "\n"
        << R"({"iter": 750, "val_mIoU": 0.85, "val_IoU": {"background": 0.79, "disc": 0.9}})" << "\n";
  }
  const LearningCurve curve = read_learning_curve(file, {"background", "disc", "missing"});
  ASSERT_EQ(curve.size(), 3u);
  EXPECT_EQ(curve[0].iter, 250);
  EXPECT_TRUE(std::isnan(curve[0].class_iou[1]));  // null: absent from the images
  EXPECT_TRUE(std::isnan(curve[0].class_iou[2]));  // not logged at all
  EXPECT_DOUBLE_EQ(curve[1].class_iou[1], 0.81);
  EXPECT_EQ(iterations_to_learn(curve, {1}, 0.8), 500);
  EXPECT_EQ(iterations_to_learn(curve, {0, 1}, 0.8), 500);
  EXPECT_EQ(iterations_to_learn(curve, {0, 1}, 0.85), -1);  // background drops below as disc passes
  EXPECT_EQ(iterations_to_learn(curve, {1}, 0.0), 500);     // a NaN never passes, even a zero bar
  EXPECT_EQ(iterations_to_learn(curve, {2}, 0.0), -1);
  EXPECT_EQ(iterations_to_learn(curve, {}, 0.5), -1);
}

TEST(LearningCurve, ACorruptLineNamesTheFileAndLine) {
  const test::TempDir dir;
  const fs::path file = dir / "metrics.jsonl";
  {
    std::ofstream out(file);
    out << R"({"iter": 20, "loss": 0.9})" << "\n" << R"({"iter": 250, "val_mI)" << "\n";
  }
  const std::string m = test::error_of([&] { read_learning_curve(file, {"disc"}); });
  EXPECT_NE(m.find(file.string() + " line 2 is not JSON"), std::string::npos) << m;
}

TEST(Leaderboard, MarkdownShowsSpreadDeltaToNoneAndSizes) {
  const std::string md = leaderboard_markdown(fixture());
  EXPECT_NE(md.find("| 1= | nonlocal | 94.00 ± 1.41 | +21.00 | - | 130.0 | 7.69 (7.54-7.92) | 0.388 | 13.00 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 5 | none | 73.00 ± 0.00 | +0.00 | - | 150.0 |"), std::string::npos) << md;
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
  const std::vector<cv::Rect> boxes = plot::place_labels(anchors, sizes, area, 6);
  ASSERT_EQ(boxes.size(), anchors.size());
  for (size_t i = 0; i < boxes.size(); ++i) {
    EXPECT_EQ(boxes[i] & area, boxes[i]) << i;
    EXPECT_EQ(boxes[i].size(), sizes[i]);
    for (size_t j = 0; j < i; ++j) EXPECT_EQ((boxes[i] & boxes[j]).area(), 0) << i << " overlaps " << j;
    for (const auto& p : anchors) EXPECT_FALSE(boxes[i].contains(p)) << i;
  }
  // A wall right of every point: the labels go elsewhere.
  const std::vector<cv::Rect> walled = plot::place_labels(anchors, sizes, area, 6, {cv::Rect(440, 50, 5, 600)});
  for (const auto& box : walled) EXPECT_EQ((box & cv::Rect(440, 50, 5, 600)).area(), 0) << box;
}

// The reach curve: per region the mean over seeds of the context classes' IoU, in the table
// (percent, "-" where a seed had none there), in the CSV (one column per region) and drawn.
TEST(Leaderboard, ReachIsTheMeanOverSeedsOfEachRegionsIoU) {
  Leaderboard b = fixture();
  b.context_classes = {"tri_checker", "tri_stripes"};
  b.region_names = {"16-64 px", "64-160 px", "160-320 px", "320-416 px"};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (auto& r : b.rows) r.reach = {{0.99, 0.97, 0.50, 0.30}, {0.97, 0.95, 0.70, 0.40}};
  b.rows.back().reach = {{0.98, 0.60, 0.34, nan}, {0.96, 0.62, 0.30, nan}};
  const std::vector<double> none = mean_reach(b.rows.back());
  ASSERT_EQ(none.size(), 4u);
  EXPECT_DOUBLE_EQ(none[1], 0.61);
  EXPECT_TRUE(std::isnan(none[3]));
  const std::string md = leaderboard_markdown(b);
  EXPECT_NE(md.find("| reach IoU % |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 98 / 96 / 60 / 35 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 97 / 61 / 32 / - |"), std::string::npos) << md;
  EXPECT_NE(md.find("(16-64 px / 64-160 px / 160-320 px / 320-416 px)"), std::string::npos) << md;
  std::istringstream csv(leaderboard_csv(b));
  std::string header, first;
  std::getline(csv, header);
  std::getline(csv, first);
  EXPECT_NE(header.find(",reach_16-64 px,reach_64-160 px,reach_160-320 px,reach_320-416 px,"), std::string::npos);
  EXPECT_NE(first.find(",0.980000,0.960000,0.600000,0.350000,"), std::string::npos) << first;
  test::TempDir dir;
  draw_reach(b, dir / "reach.png");
  EXPECT_FALSE(cv::imread((dir / "reach.png").string()).empty());
  // Without regions the table has no reach column.
  EXPECT_EQ(leaderboard_markdown(fixture()).find("reach IoU"), std::string::npos);
}

// The cue column: the mean over seeds that eval measured, in percent, "-" for a row without it;
// without any cue figure the legend line is left out.
TEST(Leaderboard, CueColumnShowsTheMeasuredShareOrADash) {
  Leaderboard b = fixture();
  EXPECT_EQ(leaderboard_markdown(b).find("Cue: share"), std::string::npos);
  b.rows[0].cue = 0.0563;
  const std::string md = leaderboard_markdown(b);
  EXPECT_NE(md.find("Cue: share"), std::string::npos) << md;
  EXPECT_NE(md.find("| ERF % | cue % | Pareto |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 5.63 | yes |"), std::string::npos) << md;  // nonlocal, on the front
  EXPECT_NE(md.find("| - | - | yes |"), std::string::npos) << md;  // gcnet: neither ERF nor cue
  std::istringstream csv(leaderboard_csv(b));
  std::string header, first;
  std::getline(csv, header);
  std::getline(csv, first);
  EXPECT_NE(header.find(",erf,cue,"), std::string::npos) << header;
  EXPECT_NE(first.find(",0.056300,"), std::string::npos) << first;
}

// tools/block_table.py, the README's trained-block table, reads the CSVs this writer produces:
// per block and sweep the mean ± spread, "learned at" as the leaderboard gives it, the reach
// curve where the sweep had regions, ERF and cue; a sweep without a block's row is refused.
std::pair<int, std::string> run_block_table(const std::string& args) {
  const std::string command = "/usr/bin/python3 '" ATTNSEG_SOURCE_DIR "/tools/block_table.py' " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, ""};
  std::string output;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(BlockTable, JoinsTheSweepsCsvsPerBlockWithTheLeaderboardsLearnedAtAndReach) {
  test::TempDir dir;
  Leaderboard beacon = fixture();
  beacon.rows[0].learned_at = {500, 1000};
  beacon.rows[1].learned_at = {750, -1};
  beacon.rows[2].learned_at = {-1, -1};
  beacon.rows[0].erf = 1.0;
  beacon.rows[0].cue = 0.0563;
  Leaderboard reach = fixture();
  reach.region_names = {"16-64 px", "64-160 px"};
  for (auto& r : reach.rows) r.reach = {{0.99, 0.51}, {0.97, 0.55}};
  std::swap(reach.rows[0], reach.rows[4]);  // another ranking: rows are joined by name
  fs::create_directories(dir / "b");
  fs::create_directories(dir / "r");
  test::write_file(dir / "b" / "leaderboard.csv", leaderboard_csv(beacon));
  test::write_file(dir / "r" / "leaderboard.csv", leaderboard_csv(reach));
  const std::string boards = "beacon='" + (dir / "b").string() + "' reach='" + (dir / "r").string() + "'";
  auto [code, out] = run_block_table(boards + " --order none,nonlocal,ccnet,gcnet,isa");
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("| block | beacon mIoU % (2 seeds) | beacon learned at | beacon ERF % | beacon cue % | "
                     "reach mIoU % (2 seeds) | reach learned at | reach IoU % by distance |"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("| `none` |"), out.find("| `"));  // the order asked for
  EXPECT_NE(out.find("| `nonlocal` | 94.00 ± 1.41 | 750 | 100.0 | 5.63 | 94.00 ± 1.41 | - | 98 / 53 | - | - |"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("| `ccnet` | 93.00 ± 0.00 | 750 (1/2) | "), std::string::npos) << out;
  EXPECT_NE(out.find("| `gcnet` | 92.00 ± 0.00 | never | "), std::string::npos) << out;
  reach.rows.pop_back();  // nonlocal, swapped to the end, is gone
  test::write_file(dir / "r" / "leaderboard.csv", leaderboard_csv(reach));
  std::tie(code, out) = run_block_table(boards);
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("error: " + (dir / "r" / "leaderboard.csv").string() + " has no row for nonlocal"),
            std::string::npos)
      << out;
  std::tie(code, out) = run_block_table("beacon='" + (dir / "missing").string() + "'");
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("error: cannot read " + (dir / "missing" / "leaderboard.csv").string()), std::string::npos)
      << out;
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
