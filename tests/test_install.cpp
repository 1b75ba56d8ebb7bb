// `cmake --install` and find_package(attnseg): the example program of examples/segment_image,
// built as another project would build it against the installed package, segments an image as
// the installed `attnseg predict` does.
#include <opencv2/imgcodecs.hpp>

#include "test_util.h"

namespace attnseg::test {
namespace {

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

TEST(Install, AProjectBuiltAgainstTheInstalledPackageSegmentsLikeTheInstalledPredict) {
  TempDir dir;
  const fs::path prefix = dir / "prefix", build = dir / "build", data = dir / "data", run = dir / "run";
  const auto install = run_shell(q(ATTNSEG_CMAKE) + " --install " + q(ATTNSEG_BUILD_DIR) + " --prefix " + q(prefix));
  ASSERT_EQ(install.exit_code, 0) << install.output;
  EXPECT_TRUE(fs::exists(prefix / "include" / "attnseg" / "segmenter.h"));
  EXPECT_FALSE(fs::exists(prefix / "include" / "engine")) << "internal headers are not part of the package";
  EXPECT_TRUE(fs::exists(prefix / "lib" / "cmake" / "attnseg" / "attnsegConfig.cmake"));
  const fs::path attnseg = prefix / "bin" / "attnseg";
  ASSERT_TRUE(fs::exists(attnseg));

  const auto configure = run_shell(q(ATTNSEG_CMAKE) + " -S " + q(fs::path(ATTNSEG_SOURCE_DIR) / "examples" / "segment_image") +
                                   " -B " + q(build) + " -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=" +
                                   q(prefix));
  ASSERT_EQ(configure.exit_code, 0) << configure.output;
  const auto compile = run_shell(q(ATTNSEG_CMAKE) + " --build " + q(build));
  ASSERT_EQ(compile.exit_code, 0) << compile.output;

  // a tiny model, trained by the installed executable
  const auto synth = run_shell(q(attnseg) + " synth --out " + q(data) + " --train 8 --val 2 --size 32");
  ASSERT_EQ(synth.exit_code, 0) << synth.output;
  write_file(dir / "tiny.yaml", tiny_config(data));
  const auto train = run_shell(q(attnseg) + " train " + q(dir / "tiny.yaml") + " --work-dir " + q(run) + kVariedPredictions);
  ASSERT_EQ(train.exit_code, 0) << train.output;

  const fs::path image = data / "images" / "val_00001.png";
  const auto predict = run_shell(q(attnseg) + " predict " + q(run) + " --input " + q(image) + " --out " + q(dir / "p"));
  ASSERT_EQ(predict.exit_code, 0) << predict.output;
  const auto example = run_shell(q(build / "segment_image") + " " + q(run / "config.yaml") + " " +
                                 q(run / "iter_2.pt") + " " + q(image) + " " + q(dir / "example.png"));
  ASSERT_EQ(example.exit_code, 0) << example.output;
  EXPECT_NE(example.output.find("ccnet on device cpu"), std::string::npos) << example.output;
  EXPECT_NE(example.output.find("disc_warm"), std::string::npos) << example.output;
  const cv::Mat mine = cv::imread((dir / "example.png").string(), cv::IMREAD_UNCHANGED);
  const cv::Mat theirs = cv::imread((dir / "p" / "labels" / "val_00001.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(mine.empty());
  ASSERT_EQ(mine.size(), theirs.size());
  EXPECT_EQ(cv::countNonZero(mine != theirs), 0);
  double top = 0;
  cv::minMaxLoc(theirs, nullptr, &top);
  EXPECT_GE(top, 2) << "the predictions are too uniform for the comparison to mean anything";

  const auto missing = run_shell(q(build / "segment_image") + " " + q(run / "config.yaml") + " " +
                                 q(run / "iter_99.pt") + " " + q(image) + " " + q(dir / "x.png"));
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("iter_99.pt"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace attnseg::test
