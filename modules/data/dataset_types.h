// The dataset types `data.type` selects: each reads the layout its dataset ships in and brings
// its class names, palette and label encoding.
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace attnseg {

// Stored mask value -> class id (255 = ignore); kInvalidLabel marks values the dataset never
// stores, which are reported as defects.
constexpr int16_t kInvalidLabel = -1;
using LabelTable = std::array<int16_t, 256>;

struct DatasetType {
  std::string name, layout;
  std::vector<std::string> class_names;  // empty for `folder`: the config lists them
  std::vector<cv::Vec3b> palette;        // RGB, one per class; empty for `folder`
  LabelTable labels{};                   // unused for `folder` (ids as stored, 255 ignore)
  std::string train_split, val_split;    // defaults
};

const std::vector<DatasetType>& dataset_types();
// Throws an Error naming `where` and the accepted names.
const DatasetType& find_dataset_type(const std::string& name, const std::string& where);

// The value `type` stores in its masks for each of `classes` classes, the smallest where several
// map to one: the ids its own tools and evaluation servers read (Cityscapes' labelIds, ADE20K's
// 1-150). `folder` stores class ids as they are. A class the type has no value for is an Error.
std::vector<uint8_t> stored_values(const DatasetType& type, size_t classes);

// The Pascal VOC colour map (256 RGB colours; 255 is the border colour, 224,224,192).
std::vector<cv::Vec3b> voc_palette();
// The class (0-20) or border (255) a VOC mask colour (RGB) stands for, -1 for any other colour.
int voc_class_of(const cv::Vec3b& rgb);

}  // namespace attnseg
