// The property that makes the synthetic dataset useful: at the default budget a model with
// criss-cross attention reads the far beacon and one without attention cannot. Trains both
// repository configs end to end through the executable (slow: minutes, labelled `slow`).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace attnseg {
namespace {

using test::read_file;
using test::run_attnseg;
using test::TempDir;

struct Scores {
  double miou;
  double disc;  // mean IoU of disc_warm and disc_cool
};

Scores train_and_evaluate(const TempDir& dir, const std::string& block) {
  const std::string config = "configs/" + block + "_r18_synthetic.yaml";
  const std::string data = "data.root='" + (dir / "data").string() + "'";
  const std::string work = (dir / block).string();
  auto r = run_attnseg("train " + config + " --work-dir '" + work + "' " + data);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string json = (dir / (block + ".json")).string();
  r = run_attnseg("eval " + config + " --checkpoint '" + work + "/" +
                  read_file(dir / block / "last_checkpoint").substr(0, read_file(dir / block / "last_checkpoint").find('\n')) +
                  "' --json '" + json + "' " + data);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(read_file(json));
  double disc = 0;
  for (const auto& c : j["classes"]) {
    const std::string name = c["name"];
    if (name.rfind("disc_", 0) == 0) disc += c["iou"].get<double>() / 2;
  }
  std::printf("%s: mIoU %.4f, disc IoU %.4f\n", block.c_str(), j["mIoU"].get<double>(), disc);
  return {j["mIoU"].get<double>(), disc};
}

TEST(ContextGap, CrissCrossReadsTheFarBeaconAndNoneCannot) {
  TempDir dir;
  const auto r = run_attnseg("synth --out '" + (dir / "data").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Scores none = train_and_evaluate(dir, "none");
  const Scores ccnet = train_and_evaluate(dir, "ccnet");
  // Without context the two disc classes are a coin toss (IoU about 1/3 each at best).
  EXPECT_LT(none.disc, 0.45);
  EXPECT_GT(ccnet.disc, none.disc + 0.25);
  EXPECT_GT(ccnet.miou, none.miou + 0.08);
}

}  // namespace
}  // namespace attnseg
