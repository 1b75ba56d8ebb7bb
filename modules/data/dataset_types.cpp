// The standard datasets' class names, palettes and label encodings (the numbers are those the
// datasets and mmsegmentation publish).
#include "data/dataset_types.h"

#include <numeric>

#include "core/error.h"

namespace attnseg {

namespace {

std::vector<cv::Vec3b> rgb(std::initializer_list<std::array<int, 3>> colours) {
  std::vector<cv::Vec3b> out;
  for (const auto& c : colours) {
    out.emplace_back(static_cast<uint8_t>(c[0]), static_cast<uint8_t>(c[1]),
                     static_cast<uint8_t>(c[2]));
  }
  return out;
}

// Cityscapes labelIds (0-33) to the 19 train ids; the other ids are ignored.
LabelTable cityscapes_table() {
  LabelTable t;
  t.fill(kInvalidLabel);
  for (int id = 0; id <= 33; ++id) t[static_cast<size_t>(id)] = 255;
  const int train_ids[][2] = {{7, 0},   {8, 1},   {11, 2},  {12, 3},  {13, 4},  {17, 5},  {19, 6},
                              {20, 7},  {21, 8},  {22, 9},  {23, 10}, {24, 11}, {25, 12}, {26, 13},
                              {27, 14}, {28, 15}, {31, 16}, {32, 17}, {33, 18}};
  for (const auto& m : train_ids) t[static_cast<size_t>(m[0])] = static_cast<int16_t>(m[1]);
  return t;
}

// ADE20K: 0 is "other" (ignored) and the 150 classes are 1-150, shifted down by one.
LabelTable ade20k_table() {
  LabelTable t;
  t.fill(kInvalidLabel);
  t[0] = 255;
  for (int k = 1; k <= 150; ++k) t[static_cast<size_t>(k)] = static_cast<int16_t>(k - 1);
  return t;
}

// CamVid as SegNet ships it: 0-10 the 11 classes, 11 void.
LabelTable camvid_table() {
  LabelTable t;
  t.fill(kInvalidLabel);
  for (int k = 0; k <= 10; ++k) t[static_cast<size_t>(k)] = static_cast<int16_t>(k);
  t[11] = 255;
  return t;
}

// Pascal VOC class-id masks (SBD's SegmentationClassAug): 0-20, 255 the object borders.
LabelTable voc_table() {
  LabelTable t;
  t.fill(kInvalidLabel);
  for (int k = 0; k <= 20; ++k) t[static_cast<size_t>(k)] = static_cast<int16_t>(k);
  t[255] = 255;
  return t;
}

}  // namespace

std::vector<cv::Vec3b> voc_palette() {
  // the VOC devkit's colour map: the bits of the index spread over R, G and B, high bit first
  std::vector<cv::Vec3b> palette(256);
  for (int i = 0; i < 256; ++i) {
    int r = 0, g = 0, b = 0, c = i;
    for (int j = 0; j < 8; ++j) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    palette[static_cast<size_t>(i)] =
        cv::Vec3b(static_cast<uint8_t>(r), static_cast<uint8_t>(g), static_cast<uint8_t>(b));
  }
  return palette;
}

int voc_class_of(const cv::Vec3b& rgb) {
  // voc_palette() spreads index bit 3j+c over bit 7-j of channel c: gather them back, then
  // keep the colour only if it is exactly that index's palette entry
  static const std::vector<cv::Vec3b> palette = voc_palette();
  int index = 0;
  for (int j = 0; j < 3; ++j) {
    for (int c = 0; c < 3; ++c) index |= ((rgb[c] >> (7 - j)) & 1) << (3 * j + c);
  }
  if (index > 255 || palette[static_cast<size_t>(index)] != rgb) return -1;
  return index <= 20 || index == 255 ? index : -1;
}

const std::vector<DatasetType>& dataset_types() {
  static const std::vector<DatasetType> types = [] {
    std::vector<DatasetType> t;
    t.push_back({"folder",
                 "images/<name><image_suffix> and masks/<name><mask_suffix> listed in a split file",
                 {},
                 {},
                 {},
                 "train.txt",
                 "val.txt"});
    t.push_back({"cityscapes",
                 "leftImg8bit/<split>/<city>/*_leftImg8bit.png, "
                 "gtFine/<split>/<city>/*_gtFine_labelIds.png",
                 {"road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                  "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                  "bus", "train", "motorcycle", "bicycle"},
                 rgb({{128, 64, 128},
                      {244, 35, 232},
                      {70, 70, 70},
                      {102, 102, 156},
                      {190, 153, 153},
                      {153, 153, 153},
                      {250, 170, 30},
                      {220, 220, 0},
                      {107, 142, 35},
                      {152, 251, 152},
                      {70, 130, 180},
                      {220, 20, 60},
                      {255, 0, 0},
                      {0, 0, 142},
                      {0, 0, 70},
                      {0, 60, 100},
                      {0, 80, 100},
                      {0, 0, 230},
                      {119, 11, 32}}),
                 cityscapes_table(),
                 "train",
                 "val"});
    std::vector<cv::Vec3b> voc = voc_palette();
    voc.resize(21);
    t.push_back(
        {"voc",
         "JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette) or "
         "SegmentationClassAug/<id>.png, "
         "ImageSets/Segmentation/<split>.txt",
         {"background", "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",
          "car",        "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",
          "motorbike",  "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"},
         voc,
         voc_table(),
         "train",
         "val"});
    t.push_back(
        {"ade20k",
         "images/<split>/*.jpg, annotations/<split>/*.png (0 = other, classes 1-150)",
         {"wall",
          "building",
          "sky",
          "floor",
          "tree",
          "ceiling",
          "road",
          "bed",
          "windowpane",
          "grass",
          "cabinet",
          "sidewalk",
          "person",
          "earth",
          "door",
          "table",
          "mountain",
          "plant",
          "curtain",
          "chair",
          "car",
          "water",
          "painting",
          "sofa",
          "shelf",
          "house",
          "sea",
          "mirror",
          "rug",
          "field",
          "armchair",
          "seat",
          "fence",
          "desk",
          "rock",
          "wardrobe",
          "lamp",
          "bathtub",
          "railing",
          "cushion",
          "base",
          "box",
          "column",
          "signboard",
          "chest of drawers",
          "counter",
          "sand",
          "sink",
          "skyscraper",
          "fireplace",
          "refrigerator",
          "grandstand",
          "path",
          "stairs",
          "runway",
          "case",
          "pool table",
          "pillow",
          "screen door",
          "stairway",
          "river",
          "bridge",
          "bookcase",
          "blind",
          "coffee table",
          "toilet",
          "flower",
          "book",
          "hill",
          "bench",
          "countertop",
          "stove",
          "palm",
          "kitchen island",
          "computer",
          "swivel chair",
          "boat",
          "bar",
          "arcade machine",
          "hovel",
          "bus",
          "towel",
          "light",
          "truck",
          "tower",
          "chandelier",
          "awning",
          "streetlight",
          "booth",
          "television receiver",
          "airplane",
          "dirt track",
          "apparel",
          "pole",
          "land",
          "bannister",
          "escalator",
          "ottoman",
          "bottle",
          "buffet",
          "poster",
          "stage",
          "van",
          "ship",
          "fountain",
          "conveyer belt",
          "canopy",
          "washer",
          "plaything",
          "swimming pool",
          "stool",
          "barrel",
          "basket",
          "waterfall",
          "tent",
          "bag",
          "minibike",
          "cradle",
          "oven",
          "ball",
          "food",
          "step",
          "tank",
          "trade name",
          "microwave",
          "pot",
          "animal",
          "bicycle",
          "lake",
          "dishwasher",
          "screen",
          "blanket",
          "sculpture",
          "hood",
          "sconce",
          "vase",
          "traffic light",
          "tray",
          "ashcan",
          "fan",
          "pier",
          "crt screen",
          "plate",
          "monitor",
          "bulletin board",
          "shower",
          "radiator",
          "glass",
          "clock",
          "flag"},
         rgb({{120, 120, 120}, {180, 120, 120}, {6, 230, 230},   {80, 50, 50},    {4, 200, 3},
              {120, 120, 80},  {140, 140, 140}, {204, 5, 255},   {230, 230, 230}, {4, 250, 7},
              {224, 5, 255},   {235, 255, 7},   {150, 5, 61},    {120, 120, 70},  {8, 255, 51},
              {255, 6, 82},    {143, 255, 140}, {204, 255, 4},   {255, 51, 7},    {204, 70, 3},
              {0, 102, 200},   {61, 230, 250},  {255, 6, 51},    {11, 102, 255},  {255, 7, 71},
              {255, 9, 224},   {9, 7, 230},     {220, 220, 220}, {255, 9, 92},    {112, 9, 255},
              {8, 255, 214},   {7, 255, 224},   {255, 184, 6},   {10, 255, 71},   {255, 41, 10},
              {7, 255, 255},   {224, 255, 8},   {102, 8, 255},   {255, 61, 6},    {255, 194, 7},
              {255, 122, 8},   {0, 255, 20},    {255, 8, 41},    {255, 5, 153},   {6, 51, 255},
              {235, 12, 255},  {160, 150, 20},  {0, 163, 255},   {140, 140, 140}, {250, 10, 15},
              {20, 255, 0},    {31, 255, 0},    {255, 31, 0},    {255, 224, 0},   {153, 255, 0},
              {0, 0, 255},     {255, 71, 0},    {0, 235, 255},   {0, 173, 255},   {31, 0, 255},
              {11, 200, 200},  {255, 82, 0},    {0, 255, 245},   {0, 61, 255},    {0, 255, 112},
              {0, 255, 133},   {255, 0, 0},     {255, 163, 0},   {255, 102, 0},   {194, 255, 0},
              {0, 143, 255},   {51, 255, 0},    {0, 82, 255},    {0, 255, 41},    {0, 255, 173},
              {10, 0, 255},    {173, 255, 0},   {0, 255, 153},   {255, 92, 0},    {255, 0, 255},
              {255, 0, 245},   {255, 0, 102},   {255, 173, 0},   {255, 0, 20},    {255, 184, 184},
              {0, 31, 255},    {0, 255, 61},    {0, 71, 255},    {255, 0, 204},   {0, 255, 194},
              {0, 255, 82},    {0, 10, 255},    {0, 112, 255},   {51, 0, 255},    {0, 194, 255},
              {0, 122, 255},   {0, 255, 163},   {255, 153, 0},   {0, 255, 10},    {255, 112, 0},
              {143, 255, 0},   {82, 0, 255},    {163, 255, 0},   {255, 235, 0},   {8, 184, 170},
              {133, 0, 255},   {0, 255, 92},    {184, 0, 255},   {255, 0, 31},    {0, 184, 255},
              {0, 214, 255},   {255, 0, 112},   {92, 255, 0},    {0, 224, 255},   {112, 224, 255},
              {70, 184, 160},  {163, 0, 255},   {153, 0, 255},   {71, 255, 0},    {255, 0, 163},
              {255, 204, 0},   {255, 0, 143},   {0, 255, 235},   {133, 255, 0},   {255, 0, 235},
              {245, 0, 255},   {255, 0, 122},   {255, 245, 0},   {10, 190, 212},  {214, 255, 0},
              {0, 204, 255},   {20, 0, 255},    {255, 255, 0},   {0, 153, 255},   {0, 41, 255},
              {0, 255, 204},   {41, 0, 255},    {41, 255, 0},    {173, 0, 255},   {0, 245, 255},
              {71, 0, 255},    {122, 0, 255},   {0, 255, 184},   {0, 92, 255},    {184, 255, 0},
              {0, 133, 255},   {255, 214, 0},   {25, 194, 194},  {102, 255, 0},   {92, 0, 255}}),
         ade20k_table(),
         "training",
         "validation"});
    t.push_back({"camvid",
                 "<split>/*.png, <split>annot/*.png (SegNet's 11 classes, 11 = void)",
                 {"sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence",
                  "car", "pedestrian", "bicyclist"},
                 rgb({{128, 128, 128},
                      {128, 0, 0},
                      {192, 192, 128},
                      {128, 64, 128},
                      {60, 40, 222},
                      {128, 128, 0},
                      {192, 128, 128},
                      {64, 64, 128},
                      {64, 0, 128},
                      {64, 64, 0},
                      {0, 128, 192}}),
                 camvid_table(),
                 "train",
                 "val"});
    return t;
  }();
  return types;
}

const DatasetType& find_dataset_type(const std::string& name, const std::string& where) {
  std::string accepted;
  for (const auto& t : dataset_types()) {
    if (t.name == name) return t;
    accepted += (accepted.empty() ? "" : ", ") + t.name;
  }
  throw Error(where + ": unknown dataset type '" + name + "'; accepted: " + accepted);
}

std::vector<uint8_t> stored_values(const DatasetType& type, size_t classes) {
  std::vector<uint8_t> values(classes);
  if (type.name == "folder") {
    std::iota(values.begin(), values.end(), uint8_t{0});
    return values;
  }
  for (size_t k = 0; k < classes; ++k) {
    size_t v = 0;
    while (v < type.labels.size() && type.labels[v] != static_cast<int16_t>(k)) ++v;
    if (v == type.labels.size()) {
      throw Error("dataset type " + type.name + " stores no value for class " + std::to_string(k));
    }
    values[k] = static_cast<uint8_t>(v);
  }
  return values;
}

}  // namespace attnseg
