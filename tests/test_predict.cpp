// attnseg predict (engine/predict.h), the library's Segmenter (include/attnseg/segmenter.h) and
// the file formats they write (core/image_files.h).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cstring>
#include <set>

#include "attnseg/segmenter.h"
#include "core/image_files.h"
#include "data/dataset_types.h"
#include "test_util.h"

namespace attnseg::test {
namespace {

cv::Mat read_labels(const fs::path& file) { return cv::imread(file.string(), cv::IMREAD_UNCHANGED); }

bool same_pixels(const cv::Mat& a, const cv::Mat& b) {
  return !a.empty() && a.size() == b.size() && a.type() == b.type() && cv::countNonZero(a != b) == 0;
}

class Predict : public TinyDataTest {
 protected:
  fs::path data() const { return data_->path(); }
  // The tiny ccnet model in <dir>/run, its predictions varied (iter_2.pt): its work directory.
  fs::path trained() {
    const fs::path run = dir / "run";
    const auto r = run_attnseg("train " + config() + " --work-dir '" + run.string() + "'" + kVariedPredictions);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return run;
  }
  std::string q(const fs::path& p) const { return "'" + p.string() + "'"; }
};

// The per-pixel classes `predict` writes are the ones `eval` scores: the confusion matrix
// counted from the label PNGs and the masks is eval's, pixel for pixel, in whole-image and in
// sliding-window inference (windows smaller than the 32x192 images, overlapping), and at three
// scales with flip.
TEST_F(Predict, LabelsAreThePredictionsEvalScoresWholeSlidingAndMultiScale) {
  const fs::path run = trained();
  const std::string windows = " eval.crop_size=[32,80] eval.stride=[16,56]";
  const std::string multi_scale = " eval.scales=[0.75,1,1.5] eval.flip=true";
  struct Way {
    std::string name, predict, eval, said;  // said: how predict and eval say they inferred
  };
  const Way ways[] = {{"whole", "", "", ""},
                      {"slide", " --slide" + windows, " eval.mode=slide" + windows,
                       "slide inference (32x80 windows, stride 16x56)"},
                      {"multi-scale", multi_scale, multi_scale, "whole inference, flip, scales 0.75, 1, 1.5"}};
  for (const Way& way : ways) {
    SCOPED_TRACE(way.name);
    const fs::path out = dir / way.name;
    // the pattern quoted, so that predict expands it, not the shell
    const auto p = run_attnseg("predict " + q(run) + " --input " + q(data() / "images" / "val_*.png") + " --out " +
                               q(out) + way.predict);
    ASSERT_EQ(p.exit_code, 0) << p.output;
    const auto e = run_attnseg("eval " + q(run) + " --json " + q(out / "eval.json") + way.eval);
    ASSERT_EQ(e.exit_code, 0) << e.output;
    // Both say how they inferred; eval's report only when it was not one whole-image view.
    if (way.said.empty()) {
      EXPECT_NE(p.output.find(", whole inference, checkpoint"), std::string::npos) << p.output;
      EXPECT_EQ(e.output.find("whole inference"), std::string::npos) << e.output;
    } else {
      EXPECT_NE(p.output.find(", " + way.said + ", checkpoint"), std::string::npos) << p.output;
      EXPECT_NE(e.output.find("\n" + way.said + "\n"), std::string::npos) << e.output;
    }
    const auto report = nlohmann::json::parse(read_file(out / "eval.json"));
    EXPECT_EQ(report.at("inference").at("scales").size(), way.name == "multi-scale" ? 3u : 1u);
    const auto expected = report.at("confusion").at("pixels").get<std::vector<std::vector<int64_t>>>();
    std::vector<std::vector<int64_t>> counted(expected.size(), std::vector<int64_t>(expected.size(), 0));
    std::set<int> classes;
    for (const char* name : {"val_00000", "val_00001", "val_00002"}) {
      const cv::Mat labels = read_labels(out / "labels" / (std::string(name) + ".png"));
      const cv::Mat mask = read_labels(data() / "masks" / (std::string(name) + ".png"));
      ASSERT_FALSE(labels.empty()) << name << "\n" << p.output;
      ASSERT_EQ(labels.type(), CV_8UC1);
      ASSERT_EQ(labels.size(), mask.size());
      for (int y = 0; y < mask.rows; ++y) {
        for (int x = 0; x < mask.cols; ++x) {
          const int truth = mask.at<uint8_t>(y, x), predicted = labels.at<uint8_t>(y, x);
          if (truth < static_cast<int>(counted.size())) ++counted[truth][predicted];
          classes.insert(predicted);
        }
      }
    }
    EXPECT_EQ(counted, expected);
    EXPECT_GE(classes.size(), 3u) << "the predictions are too uniform for the comparison to mean anything";
  }
}

TEST_F(Predict, AnUnreadableImageIsNamedAndSkippedTheOthersAreWrittenAndTheExitIsNonZero) {
  const fs::path run = trained(), in = dir / "in", out = dir / "out";
  fs::create_directories(in / "sub");
  fs::copy_file(data() / "images" / "val_00000.png", in / "a.png");
  fs::copy_file(data() / "images" / "val_00001.png", in / "sub" / "c.png");
  write_file(in / "b.png", "not a PNG at all");
  write_file(in / "notes.txt", "not an image name: not an input");
  const auto r = run_attnseg("predict " + q(run) + " --input " + q(in) + " --out " + q(out));
  expect_clean_error(r, {"1 of 3 inputs", (in / "b.png").string()});
  EXPECT_NE(r.output.find("warning"), std::string::npos) << r.output;
  EXPECT_FALSE(read_labels(out / "labels" / "a.png").empty()) << r.output;
  EXPECT_FALSE(read_labels(out / "labels" / "sub" / "c.png").empty()) << r.output;  // the input's tree is kept
  EXPECT_FALSE(fs::exists(out / "labels" / "b.png"));
  EXPECT_FALSE(fs::exists(out / "labels" / "notes.png"));
}

// The probability file is float32 [K, H, W] summing to 1 over the classes, its arg-max is the
// label map, and the overlay is a colour image of the input's size.
TEST_F(Predict, ProbabilitiesSumToOneAndTheirArgMaxIsTheLabelMap) {
  const fs::path run = trained(), out = dir / "out";
  const auto r = run_attnseg("predict " + q(run) + " --input " + q(data() / "images" / "val_00002.png") +
                             " --out " + q(out) + " --overlay --probabilities");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const cv::Mat labels = read_labels(out / "labels" / "val_00002.png");
  const cv::Mat image = cv::imread((data() / "images" / "val_00002.png").string());
  ASSERT_FALSE(labels.empty()) << r.output;
  const Npy npy = read_npy(out / "probabilities" / "val_00002.npy");
  ASSERT_EQ(npy.shape, (std::vector<int64_t>{6, labels.rows, labels.cols}));
  ASSERT_EQ(npy.values.size(), static_cast<size_t>(6 * labels.rows * labels.cols));
  const size_t plane = static_cast<size_t>(labels.rows) * labels.cols;
  int64_t disagree = 0;
  double worst_sum = 0;
  for (size_t i = 0; i < plane; ++i) {
    double sum = 0;
    int best = 0;
    for (int k = 0; k < 6; ++k) {
      sum += npy.values[k * plane + i];
      if (npy.values[k * plane + i] > npy.values[best * plane + i]) best = k;
    }
    worst_sum = std::max(worst_sum, std::abs(sum - 1));
    disagree += best != labels.data[i];
  }
  EXPECT_LT(worst_sum, 1e-5);
  EXPECT_EQ(disagree, 0);
  const cv::Mat shown = cv::imread((out / "overlays" / "val_00002.png").string(), cv::IMREAD_UNCHANGED);
  EXPECT_EQ(shown.size(), image.size());
  EXPECT_EQ(shown.type(), CV_8UC3);
}

// --dataset-ids writes what the dataset's masks store: read as Cityscapes, a 19-class model's
// classes become labelIds, grey, each of which Cityscapes' own table reads back as the class
// the same model predicts there without the flag.
TEST_F(Predict, DatasetIdsAreLabelIdsThatCityscapesOwnTableReadsBackAsEachPixelsClass) {
  std::string classes = " data.classes=[background,beacon_warm,beacon_cool,box,disc_warm,disc_cool";
  for (int k = 6; k < 19; ++k) classes += ",c" + std::to_string(k);
  classes += "]";
  const fs::path run = dir / "run", out = dir / "out";
  const auto t = run_attnseg("train " + config() + " --work-dir " + q(run) + kVariedPredictions + classes);
  ASSERT_EQ(t.exit_code, 0) << t.output;
  const std::string input = " --input " + q(data() / "images" / "val_00001.png");
  const auto plain = run_attnseg("predict " + q(run) + input + " --out " + q(out / "classes"));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  const auto ids = run_attnseg("predict " + q(run) + input + " --out " + q(out / "ids") + " --dataset-ids data.type=cityscapes");
  ASSERT_EQ(ids.exit_code, 0) << ids.output;
  const cv::Mat predicted = read_labels(out / "classes" / "labels" / "val_00001.png");
  const cv::Mat stored = read_labels(out / "ids" / "labels" / "val_00001.png");
  ASSERT_EQ(predicted.type(), CV_8UC1);
  ASSERT_EQ(stored.type(), CV_8UC1) << "grey levels, not a palette image";
  ASSERT_EQ(stored.size(), predicted.size());
  const LabelTable& cityscapes = find_dataset_type("cityscapes", "test").labels;
  std::set<int> seen;
  int64_t wrong = 0;
  for (size_t i = 0; i < stored.total(); ++i) {
    wrong += cityscapes[stored.data[i]] != predicted.data[i];
    seen.insert(stored.data[i]);
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_GE(seen.size(), 3u) << "the predictions are too uniform for the comparison to mean anything";
}

// A run directory stands for its config.yaml and its latest checkpoint, for predict, eval and
// demo (which say which checkpoint they took); a config file needs --checkpoint.
TEST_F(Predict, ARunDirectoryStandsForItsConfigAndLatestCheckpoint) {
  const fs::path run = trained();
  const fs::path image = data() / "images" / "val_00001.png";
  const auto by_dir = run_attnseg("predict " + q(run) + " --input " + q(image) + " --out " + q(dir / "a"));
  ASSERT_EQ(by_dir.exit_code, 0) << by_dir.output;
  const auto by_file = run_attnseg("predict " + q(run / "config.yaml") + " --checkpoint " + q(run / "iter_2.pt") +
                                   " --input " + q(image) + " --out " + q(dir / "b"));
  ASSERT_EQ(by_file.exit_code, 0) << by_file.output;
  EXPECT_NE(by_dir.output.find("iter_2.pt"), std::string::npos) << by_dir.output;
  EXPECT_TRUE(same_pixels(read_labels(dir / "a" / "labels" / "val_00001.png"),
                          read_labels(dir / "b" / "labels" / "val_00001.png")));
  const std::string taken = "checkpoint " + (run / "iter_2.pt").string() + " (the run's latest)";
  const auto eval = run_attnseg("eval " + q(run));
  EXPECT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_NE(eval.output.find("mIoU"), std::string::npos) << eval.output;
  EXPECT_NE(eval.output.find(taken), std::string::npos) << eval.output;
  const auto demo = run_attnseg("demo " + q(run) + " --source " + q(image) + " --headless --output " + q(dir / "d.avi"));
  EXPECT_EQ(demo.exit_code, 0) << demo.output;
  EXPECT_NE(demo.output.find(taken), std::string::npos) << demo.output;
  EXPECT_NE(demo.output.find("showed 1 of 1 frames"), std::string::npos) << demo.output;
  EXPECT_NE(demo.output.find("(0 dropped); a frame rate needs two frames"), std::string::npos) << demo.output;
  for (const std::string& command :
       {"eval " + q(dir / "nowhere"), "predict " + q(dir / "nowhere") + " --input " + q(image) + " --out " + q(dir / "n"),
        "demo " + q(dir / "nowhere") + " --source " + q(image) + " --headless --output " + q(dir / "n.avi")}) {
    expect_clean_error(run_attnseg(command), {(dir / "nowhere").string() + " does not exist"});
  }
  expect_clean_error(run_attnseg("predict " + q(run / "config.yaml") + " --input " + q(image) + " --out " +
                                 q(dir / "c")),
                     {"--checkpoint"});
  const fs::path empty = dir / "empty_run";
  fs::create_directories(empty);
  expect_clean_error(run_attnseg("eval " + q(empty)), {(empty / "config.yaml").string()});
}

TEST_F(Predict, InputsThatNameNothingOrCollideAreRefusedByName) {
  const fs::path run = trained();
  expect_clean_error(run_attnseg("predict " + q(run) + " --input " + q(dir / "nowhere.png") + " --out " + q(dir / "o")),
                     {"--input", "nowhere.png", "does not exist"});
  expect_clean_error(run_attnseg("predict " + q(run) + " --input " + q(dir / "*.jpg") + " --out " + q(dir / "o")),
                     {"--input", "*.jpg", "matches no file"});
  fs::create_directories(dir / "x");
  fs::create_directories(dir / "y");
  fs::copy_file(data() / "images" / "val_00000.png", dir / "x" / "same.png");
  fs::copy_file(data() / "images" / "val_00001.png", dir / "y" / "same.png");
  expect_clean_error(run_attnseg("predict " + q(run) + " --input " + q(dir / "x" / "same.png") + " --input " +
                                 q(dir / "y" / "same.png") + " --out " + q(dir / "o")),
                     {"would both write", "same.png"});
  EXPECT_FALSE(fs::exists(dir / "o"));
  // an output folder that cannot be made: one line naming it, nothing half-written
  write_file(dir / "taken", "a file where the output folder would go");
  expect_clean_error(run_attnseg("predict " + q(run) + " --input " + q(data() / "images" / "val_00000.png") +
                                 " --out " + q(dir / "taken")),
                     {"cannot create the output directory", (dir / "taken" / "labels").string(),
                      ": Not a directory"});
  EXPECT_EQ(read_file(dir / "taken"), "a file where the output folder would go");
}

// The library's class: the labels of `predict`, probabilities over the classes, and errors as
// one-line std::runtime_errors that name what is wrong.
TEST_F(Predict, SegmenterGivesThePredictCommandsLabelsAndOneLineErrors) {
  const fs::path run = trained();
  const fs::path image = data() / "images" / "val_00002.png";
  const auto r = run_attnseg("predict " + q(run) + " --input " + q(image) + " --out " + q(dir / "p"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  SegmenterOptions on_cpu;
  on_cpu.device = "cpu";
  on_cpu.threads = 1;
  Segmenter segmenter((run / "config.yaml").string(), (run / "iter_2.pt").string(), on_cpu);
  const cv::Mat bgr = cv::imread(image.string());
  const cv::Mat labels = segmenter.predict(bgr);
  EXPECT_TRUE(same_pixels(labels, read_labels(dir / "p" / "labels" / "val_00002.png")));
  const at::Tensor probs = segmenter.probabilities(bgr);
  ASSERT_EQ(probs.sizes(), (at::IntArrayRef{6, bgr.rows, bgr.cols}));
  EXPECT_TRUE(probs.sum(0).allclose(at::ones({bgr.rows, bgr.cols}), 1e-5, 1e-5));
  EXPECT_EQ(segmenter.class_names().size(), 6u);
  EXPECT_EQ(segmenter.palette().size(), 6u);
  EXPECT_EQ(segmenter.block(), "ccnet");

  const auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("(nothing thrown)");
  };
  const std::string missing = (dir / "missing.pt").string();
  EXPECT_NE(message([&] { Segmenter((run / "config.yaml").string(), missing); }).find(missing), std::string::npos);
  SegmenterOptions on_tpu;
  on_tpu.device = "tpu";
  EXPECT_NE(message([&] { Segmenter((run / "config.yaml").string(), (run / "iter_2.pt").string(), on_tpu); })
                .find("runtime.device"),
            std::string::npos);
  EXPECT_NE(message([&] { segmenter.predict(cv::Mat()); }).find("empty"), std::string::npos);
  EXPECT_NE(message([&] { segmenter.predict(cv::Mat(8, 8, CV_32FC3)); }).find("8-bit"), std::string::npos);
  const std::string grey = message([&] { (void)segmenter.predict(cv::Mat(31, 47, CV_8UC1, cv::Scalar(90))); });
  EXPECT_EQ(grey, "(nothing thrown)");
}

// Indexed PNG: viewers (and cv::imread) see each pixel in its label's palette colour, on an
// odd size; palette and labels that do not fit are refused.
TEST(ImageFiles, IndexedPngShowsEachLabelInItsPaletteColour) {
  TempDir dir;
  cv::Mat labels(7, 13, CV_8UC1);
  cv::randu(labels, 0, 5);
  const std::vector<cv::Vec3b> palette = {{0, 0, 0}, {200, 10, 10}, {10, 200, 10}, {10, 10, 200}, {90, 90, 90}};
  write_file(dir / "l.png", encode_indexed_png(labels, palette));
  const cv::Mat shown = cv::imread((dir / "l.png").string(), cv::IMREAD_COLOR);
  ASSERT_EQ(shown.size(), labels.size());
  int64_t wrong = 0;
  for (int y = 0; y < labels.rows; ++y) {
    for (int x = 0; x < labels.cols; ++x) {
      const cv::Vec3b rgb = palette[labels.at<uint8_t>(y, x)], bgr = shown.at<cv::Vec3b>(y, x);
      wrong += bgr != cv::Vec3b(rgb[2], rgb[1], rgb[0]);
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_THROW(encode_indexed_png(labels, {palette.begin(), palette.begin() + 3}), Error);
  EXPECT_THROW(encode_indexed_png(cv::Mat(3, 3, CV_16UC1, cv::Scalar(0)), palette), Error);
}

TEST(ImageFiles, NpyHeaderIsAlignedAndTheValuesFollowInCOrder) {
  TempDir dir;
  const at::Tensor values = at::arange(2 * 3 * 5, at::kFloat).reshape({2, 3, 5}).transpose(1, 2);  // not contiguous
  const std::string bytes = encode_npy(values);
  write_file(dir / "v.npy", bytes);
  const size_t header = static_cast<uint8_t>(bytes[8]) | static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8;
  EXPECT_EQ((10 + header) % 64, 0u);
  EXPECT_EQ(bytes[6], 1);
  EXPECT_EQ(bytes[7], 0);
  EXPECT_NE(bytes.find("'descr': '<f4'"), std::string::npos);
  EXPECT_EQ(bytes[10 + header - 1], '\n');
  const Npy npy = read_npy(dir / "v.npy");
  EXPECT_EQ(npy.shape, (std::vector<int64_t>{2, 5, 3}));
  const at::Tensor flat = values.contiguous().flatten();
  ASSERT_EQ(npy.values.size(), 30u);
  for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(npy.values[i], flat[i].item<float>()) << i;
}

}  // namespace
}  // namespace attnseg::test
