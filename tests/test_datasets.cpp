// The dataset types against tiny fixtures in each dataset's exact on-disk layout, written by
// the tests: names and folder depth, label encodings (Cityscapes labelIds, VOC palette PNGs,
// ADE20K's shift, CamVid's void), class names and palettes; and `data check` finding each
// planted defect.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <cstdlib>
#include <fstream>

#include "config/config.h"
#include "data/dataset.h"
#include "data/dataset_types.h"
#include "test_util.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// A 12x8 image and a mask whose four 3-column bands hold the given stored values.
void write_pair(const fs::path& image, const fs::path& mask, const std::vector<uint8_t>& bands) {
  fs::create_directories(image.parent_path());
  fs::create_directories(mask.parent_path());
  ASSERT_TRUE(cv::imwrite(image.string(), cv::Mat(8, 12, CV_8UC3, cv::Scalar(30, 90, 150))));
  cv::Mat m(8, 12, CV_8UC1);
  for (int x = 0; x < 12; ++x) m.col(x).setTo(bands[static_cast<size_t>(x / 3)]);
  ASSERT_TRUE(cv::imwrite(mask.string(), m));
}

DatasetInfo info_for(const std::string& data_yaml) {
  return read_dataset_info(Config::from_string(data_yaml, "test.yaml").root().child("data"));
}

// The class ids of the four bands of sample `index`.
std::vector<int> bands_of(const FolderDataset& ds, size_t index) {
  const Sample s = ds.load(index);
  std::vector<int> out;
  for (int x = 0; x < 12; x += 3) out.push_back(s.mask.at<uint8_t>(4, x));
  return out;
}

TEST(DatasetTypes, EachStandardTypeHasItsClassesAndAColourForEach) {
  const std::pair<std::string, size_t> expected[] = {{"cityscapes", 19}, {"voc", 21}, {"ade20k", 150}, {"camvid", 11}};
  for (const auto& [name, classes] : expected) {
    const DatasetType& t = find_dataset_type(name, "test");
    EXPECT_EQ(t.class_names.size(), classes) << name;
    EXPECT_EQ(t.palette.size(), classes) << name;
  }
  EXPECT_EQ(find_dataset_type("cityscapes", "t").palette[0], cv::Vec3b(128, 64, 128));  // road
  EXPECT_EQ(find_dataset_type("ade20k", "t").class_names[149], "flag");
  const auto voc = voc_palette();
  EXPECT_EQ(voc[1], cv::Vec3b(128, 0, 0));     // aeroplane
  EXPECT_EQ(voc[15], cv::Vec3b(192, 128, 128));  // person
  EXPECT_EQ(voc[255], cv::Vec3b(224, 224, 192));  // border
  try {
    find_dataset_type("coco", "config key data.type");
    FAIL() << "no such type";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cityscapes, voc, ade20k, camvid"), std::string::npos) << e.what();
  }
}

// What `predict --dataset-ids` writes: for each class, a value the type's own table reads back
// as that class, the smallest such; Cityscapes' are the labelIds cityscapesScripts lists for
// the 19 train ids, ADE20K's the classes shifted up past 0 ("other").
TEST(DatasetTypes, StoredValuesAreTheSmallestMaskValuesEachTypesTableReadsAsTheClass) {
  for (const DatasetType& t : dataset_types()) {
    if (t.name == "folder") continue;
    SCOPED_TRACE(t.name);
    const std::vector<uint8_t> values = stored_values(t, t.class_names.size());
    ASSERT_EQ(values.size(), t.class_names.size());
    for (size_t k = 0; k < values.size(); ++k) {
      EXPECT_EQ(t.labels[values[k]], static_cast<int16_t>(k)) << "class " << k;
      for (size_t v = 0; v < values[k]; ++v) EXPECT_NE(t.labels[v], static_cast<int16_t>(k)) << "class " << k;
    }
  }
  EXPECT_EQ(stored_values(find_dataset_type("cityscapes", "t"), 19),
            (std::vector<uint8_t>{7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}));
  const std::vector<uint8_t> ade = stored_values(find_dataset_type("ade20k", "t"), 150);
  EXPECT_EQ(ade.front(), 1);
  EXPECT_EQ(ade.back(), 150);
  EXPECT_EQ(stored_values(find_dataset_type("folder", "t"), 3), (std::vector<uint8_t>{0, 1, 2}));
  EXPECT_THROW(stored_values(find_dataset_type("cityscapes", "t"), 20), Error);
}

TEST(DatasetTypes, CityscapesMapsLabelIdsToTheNineteenTrainIds) {
  TempDir dir;
  const fs::path root = dir / "cityscapes";
  // road (7), car (26), bicycle (33), static (4, not a train class)
  write_pair(root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
             root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png", {7, 26, 33, 4});
  write_pair(root / "leftImg8bit/train/bremen/bremen_000001_000019_leftImg8bit.png",
             root / "gtFine/train/bremen/bremen_000001_000019_gtFine_labelIds.png", {0, 23, 24, 40});
  // files of the other encodings beside them are not taken for samples
  write_pair(root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png",
             root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_color.png", {0, 0, 0, 0});
  const DatasetInfo info = info_for("data: {type: cityscapes, root: '" + root.string() + "'}\n");
  EXPECT_EQ(info.class_names.size(), 19u);
  EXPECT_EQ(info.class_names[13], "car");
  EXPECT_EQ(info.train.split, "train");
  const FolderDataset train(info.train);
  ASSERT_EQ(train.size(), 2u);
  EXPECT_EQ(train.name(0), "train/aachen/aachen_000000_000019");
  EXPECT_EQ(bands_of(train, 0), (std::vector<int>{0, 13, 18, 255}));
  try {
    train.load(1);
    FAIL() << "labelId 40 does not exist";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("bremen_000001_000019_gtFine_labelIds.png holds label 40 at (9, 0)"), std::string::npos) << m;
    EXPECT_NE(m.find("0-33"), std::string::npos) << m;
  }
  try {
    FolderDataset val(info.val);
    FAIL() << "the labelIds mask of frankfurt is missing";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("frankfurt_000000_000294_gtFine_labelIds.png"), std::string::npos) << e.what();
  }
}

TEST(DatasetTypes, VocReadsPalettePngsAndAugmentedClassIdsAndNamesAMaskPastTheClasses) {
  ASSERT_EQ(std::system("command -v convert >/dev/null"), 0) << "ImageMagick: tools/setup.sh installs it";
  TempDir dir;
  const fs::path root = dir / "VOC2012";
  fs::create_directories(root / "JPEGImages");
  fs::create_directories(root / "SegmentationClass");
  ASSERT_TRUE(cv::imwrite((root / "JPEGImages/2007_000032.jpg").string(), cv::Mat(8, 12, CV_8UC3, cv::Scalar(9, 9, 9))));
  // background, aeroplane, person, border as the devkit colours them, saved as a palette PNG
  cv::Mat colours(8, 12, CV_8UC3);
  const auto voc = voc_palette();
  const int index[4] = {0, 1, 15, 255};
  for (int x = 0; x < 12; ++x) {
    const cv::Vec3b rgb = voc[static_cast<size_t>(index[x / 3])];
    colours.col(x).setTo(cv::Scalar(rgb[2], rgb[1], rgb[0]));
  }
  ASSERT_TRUE(cv::imwrite((dir / "rgb.png").string(), colours));
  const fs::path mask = root / "SegmentationClass/2007_000032.png";
  ASSERT_EQ(std::system(("convert '" + (dir / "rgb.png").string() + "' PNG8:'" + mask.string() + "'").c_str()), 0);
  {
    std::ifstream png(mask, std::ios::binary);
    char header[26];
    png.read(header, 26);
    ASSERT_EQ(header[25], 3) << "PNG colour type 3: indexed, as the devkit ships them";
  }
  test::write_file(root / "ImageSets/Segmentation/train.txt", "2007_000032\n");
  DatasetInfo info = info_for("data: {type: voc, root: '" + root.string() + "'}\n");
  EXPECT_EQ(info.class_names[15], "person");
  EXPECT_EQ(info.palette[1], cv::Vec3b(128, 0, 0));
  FolderDataset train(info.train);
  ASSERT_EQ(train.size(), 1u);
  EXPECT_EQ(bands_of(train, 0), (std::vector<int>{0, 1, 15, 255}));

  // SBD's augmented set: class ids as grey levels, with its own split file
  write_pair(root / "JPEGImages/2008_000002.jpg", root / "SegmentationClassAug/2008_000002.png", {0, 20, 255, 7});
  test::write_file(root / "ImageSets/Segmentation/aug.txt", "2008_000002\n");
  info = info_for("data: {type: voc, root: '" + root.string() + "', voc_aug: true, train_split: aug}\n");
  FolderDataset aug(info.train);
  EXPECT_EQ(bands_of(aug, 0), (std::vector<int>{0, 20, 255, 7}));
  write_pair(root / "JPEGImages/2008_000003.jpg", root / "SegmentationClassAug/2008_000003.png", {0, 21, 0, 0});
  test::write_file(root / "ImageSets/Segmentation/aug.txt", "2008_000003\n");
  FolderDataset bad(info.train);
  const std::string m = test::error_of([&] { bad.load(0); });
  EXPECT_NE(m.find("SegmentationClassAug/2008_000003.png holds label 21 at (3, 0)"), std::string::npos) << m;
}

TEST(DatasetTypes, Ade20kShiftsLabelsDownIgnoresZeroAndNamesAMaskPastTheClasses) {
  TempDir dir;
  const fs::path root = dir / "ADEChallengeData2016";
  write_pair(root / "images/training/ADE_train_00000001.jpg", root / "annotations/training/ADE_train_00000001.png",
             {0, 1, 150, 13});
  write_pair(root / "images/validation/ADE_val_00000001.jpg", root / "annotations/validation/ADE_val_00000001.png",
             {151, 1, 1, 1});
  const DatasetInfo info = info_for("data: {type: ade20k, root: '" + root.string() + "'}\n");
  EXPECT_EQ(info.class_names.size(), 150u);
  FolderDataset train(info.train);
  ASSERT_EQ(train.size(), 1u);
  EXPECT_EQ(train.name(0), "ADE_train_00000001");
  EXPECT_EQ(bands_of(train, 0), (std::vector<int>{255, 0, 149, 12}));
  FolderDataset val(info.val);
  try {
    val.load(0);
    FAIL() << "151 is past the 150 classes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("annotations/validation/ADE_val_00000001.png holds label 151"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("0-150"), std::string::npos) << e.what();
  }
}

TEST(DatasetTypes, CamVidKeepsElevenClassesIgnoresVoidAndNamesAMaskPastThem) {
  TempDir dir;
  const fs::path root = dir / "CamVid";
  write_pair(root / "train/0001TP_006690.png", root / "trainannot/0001TP_006690.png", {0, 10, 11, 3});
  write_pair(root / "val/0016E5_07959.png", root / "valannot/0016E5_07959.png", {12, 0, 0, 0});
  const DatasetInfo info = info_for("data: {type: camvid, root: '" + root.string() + "'}\n");
  EXPECT_EQ(info.class_names[10], "bicyclist");
  FolderDataset train(info.train);
  EXPECT_EQ(bands_of(train, 0), (std::vector<int>{0, 10, 255, 3}));
  FolderDataset val(info.val);
  const std::string m = test::error_of([&] { val.load(0); });
  EXPECT_NE(m.find("valannot/0016E5_07959.png holds label 12 at (0, 0)"), std::string::npos) << m;
}

TEST(DatasetTypes, ConfigMistakesAreNamed) {
  TempDir dir;
  auto message = [&](const std::string& yaml) {
    try {
      const DatasetInfo info = info_for(yaml);
      FolderDataset d(info.train);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("data: {type: cityscapes, root: '" + (dir / "none").string() + "'}\n").find("data/README.md"),
            std::string::npos);
  fs::create_directories(dir / "empty");
  EXPECT_NE(message("data: {type: ade20k, root: '" + (dir / "empty").string() + "'}\n").find("images/training"),
            std::string::npos);
  EXPECT_NE(message("data: {type: camvid, root: x, classes: [a, b]}\n").find("camvid has 11"), std::string::npos);
  EXPECT_NE(message("data: {type: coco, root: x}\n").find("unknown dataset type 'coco'"), std::string::npos);
}

}  // namespace
}  // namespace attnseg
