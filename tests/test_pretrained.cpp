// The torchvision converter: randomly initialised torchvision ResNet-18 and ResNet-50 (written
// by tests/torchvision_resnet.py with Debian's python3-torchvision), converted by
// tools/convert_torchvision.py and loaded into our backbone, give torchvision's features on the
// same input; weights that do not fit are listed by name.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "backbone/pretrained.h"
#include "config/config.h"
#include "core/error.h"
#include "engine/experiment.h"
#include "test_util.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

at::Tensor read_entry(const fs::path& file, const std::string& key) {
  std::ifstream in(file, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  return torch::pickle_load(bytes).toGenericDict().at(key).toTensor();
}

class Pretrained : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One thread on both sides, so that both usually sum in the same order; the comparison's
    // tolerance is relative to the values compared and does not depend on it (float32 sums of
    // values up to ~2500 in another order differ by a few 1e-3: 2e-6 of the largest).
    at::set_num_threads(1);
    dir_ = new test::TempDir();
    const std::string command = "OMP_NUM_THREADS=1 /usr/bin/python3 '" ATTNSEG_SOURCE_DIR
                                "/tests/torchvision_resnet.py' '" +
                                dir_->path().string() + "'";
    ASSERT_EQ(std::system(command.c_str()), 0)
        << "needs python3-torchvision (tools/setup.sh installs it)";
    for (const char* depth : {"18", "50"}) {
      const std::string convert =
          "/usr/bin/python3 '" ATTNSEG_SOURCE_DIR "/tools/convert_torchvision.py' '" +
          (*dir_ / ("resnet" + std::string(depth) + ".pth")).string() + "' '" +
          (*dir_ / ("converted" + std::string(depth) + ".pt")).string() + "' >/dev/null";
      ASSERT_EQ(std::system(convert.c_str()), 0) << depth;
    }
  }
  static void TearDownTestSuite() { delete dir_; }
  static ResNet torchvision_like(int64_t depth) {
    return ResNet(ResNetOptions(depth).deep_stem(false).output_stride(8));
  }
  static test::TempDir* dir_;
};
test::TempDir* Pretrained::dir_ = nullptr;

TEST_F(Pretrained, ConvertedTorchvisionResNetsGiveTorchvisionsFeatures) {
  const at::Tensor image = read_entry(*dir_ / "input.pt", "image");
  for (int64_t depth : {18, 50}) {
    ResNet net = torchvision_like(depth);
    load_backbone_weights(net, *dir_ / ("converted" + std::to_string(depth) + ".pt"));
    net->eval();
    at::NoGradGuard no_grad;
    const BackboneFeatures ours = net->forward(image);
    const fs::path expected = *dir_ / ("features" + std::to_string(depth) + ".pt");
    for (const auto& [name, tensor] :
         {std::pair{"stage3", ours.stage3}, std::pair{"stage4", ours.stage4}}) {
      const at::Tensor reference = read_entry(expected, name);
      ASSERT_EQ(tensor.sizes(), reference.sizes()) << "resnet" << depth << " " << name;
      // float32 rounding of sums in another order stays within ~1e-6 of the largest value
      // (2e-6 measured across machines); a wrong weight or layer moves features by a good
      // fraction of their scale. 1e-5 of the scale keeps five times the rounding's room.
      const double diff = (tensor - reference).abs().max().item<double>();
      const double scale = std::max(1.0, reference.abs().max().item<double>());
      EXPECT_LE(diff, 1e-5 * scale) << "resnet" << depth << " " << name << ": " << diff / scale
                                    << " of the largest value, " << scale;
    }

    // written back by save_backbone_weights, it loads into a fresh backbone with the same result
    const fs::path again = *dir_ / ("again" + std::to_string(depth) + ".pt");
    save_backbone_weights(net, again);
    ResNet fresh = torchvision_like(depth);
    load_backbone_weights(fresh, again);
    fresh->eval();
    EXPECT_TRUE(fresh->forward(image).stage4.equal(ours.stage4)) << depth;
  }
}

TEST_F(Pretrained, WeightsThatDoNotFitAreListed) {
  auto message = [](auto&& load) {
    try {
      load();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ResNet r50 = torchvision_like(50);
  std::string m = message([&] { load_backbone_weights(r50, *dir_ / "converted18.pt"); });
  EXPECT_NE(m.find("converted18.pt does not fit"), std::string::npos) << m;
  EXPECT_NE(m.find("missing layer1.0.bn3.bias"), std::string::npos) << m;
  EXPECT_NE(m.find("other shapes"), std::string::npos) << m;
  ResNet deep(ResNetOptions(18));  // the deep stem has no 7x7 convolution to take the weights
  m = message([&] { load_backbone_weights(deep, *dir_ / "converted18.pt"); });
  EXPECT_NE(m.find("missing stem.3.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("other shapes stem.0.weight"), std::string::npos) << m;
  ResNet r18 = torchvision_like(18);
  m = message([&] { load_backbone_weights(r18, *dir_ / "resnet18.pth"); });
  EXPECT_NE(m.find("tools/convert_torchvision.py"), std::string::npos)
      << "an unconverted torchvision file: " << m;
  test::write_file(*dir_ / "junk.pt", "not a checkpoint\n");
  m = message([&] { load_backbone_weights(r18, *dir_ / "junk.pt"); });
  EXPECT_NE(m.find("junk.pt is not a torch.save file this reads"), std::string::npos) << m;
  m = message([&] { load_backbone_weights(r18, *dir_ / "absent.pt"); });
  EXPECT_NE(m.find("absent.pt does not exist"), std::string::npos) << m;

  // the converter refuses what is no torchvision ResNet, and writes nothing then
  for (const char* input : {"junk.pt", "converted18.pt", "absent.pth"}) {
    const fs::path out = *dir_ / "refused.pt";
    const std::string convert = "/usr/bin/python3 '" ATTNSEG_SOURCE_DIR "/tools/convert_torchvision.py' '" +
                                (*dir_ / input).string() + "' '" + out.string() + "' 2>/dev/null";
    EXPECT_NE(std::system(convert.c_str()), 0) << input;
    EXPECT_FALSE(fs::exists(out)) << input;
  }
}

TEST_F(Pretrained, TheConfigKeyLoadsTheConvertedWeightsIntoTheModel) {
  test::write_file(*dir_ / "tiny.yaml", test::tiny_config(*dir_ / "data", "ccnet"));
  auto load = [&](const std::string& file) {
    return build_model(read_experiment(Config::load(
        *dir_ / "tiny.yaml", {"model.backbone.width=1.0", "model.backbone.deep_stem=false",
                              "model.backbone.pretrained=" + file})));
  };
  Segmentor model = load((*dir_ / "converted18.pt").string());
  ResNet reference = torchvision_like(18);
  load_backbone_weights(reference, *dir_ / "converted18.pt");
  EXPECT_TRUE(model->backbone()->named_parameters()["layer4.1.conv2.weight"].equal(
      reference->named_parameters()["layer4.1.conv2.weight"]));
  EXPECT_TRUE(model->backbone()->named_buffers()["stem.1.running_var"].equal(
      reference->named_buffers()["stem.1.running_var"]));
  try {
    load((*dir_ / "converted50.pt").string());
    FAIL() << "ResNet-50 weights in a ResNet-18";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.backbone.pretrained"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("converted50.pt does not fit"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace attnseg
