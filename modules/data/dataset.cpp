#include "data/dataset.h"

#include <algorithm>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "config/config.h"
#include "core/error.h"
#include "data/dataset_types.h"

namespace attnseg {

namespace fs = std::filesystem;

namespace {

// Files under `dir` whose names end in `suffix`, sorted, recursing into subfolders.
std::vector<fs::path> files_ending(const fs::path& dir, const std::string& suffix, bool recurse) {
  std::vector<fs::path> out;
  auto take = [&](const fs::directory_entry& e) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(e.path());
    }
  };
  if (recurse) {
    for (const auto& e : fs::recursive_directory_iterator(dir)) take(e);
  } else {
    for (const auto& e : fs::directory_iterator(dir)) take(e);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> read_split_file(const fs::path& split) {
  std::ifstream in(split);
  if (!in) throw Error("cannot read split file " + split.string());
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

std::string strip(const std::string& name, const std::string& suffix) {
  return name.substr(0, name.size() - suffix.size());
}

// The stored values a table accepts, as ranges: "0-33", "0-20 and 255".
std::string accepted_values(const LabelTable& table) {
  std::string out;
  for (int v = 0; v < 256;) {
    if (table[static_cast<size_t>(v)] == kInvalidLabel) {
      ++v;
      continue;
    }
    int end = v;
    while (end + 1 < 256 && table[static_cast<size_t>(end + 1)] != kInvalidLabel) ++end;
    out += (out.empty() ? "" : " and ") + std::to_string(v) +
           (end > v ? "-" + std::to_string(end) : "");
    v = end + 1;
  }
  return out;
}

}  // namespace

FolderDataset::FolderDataset(const FolderDatasetOptions& options, bool require_files)
    : options_(options), type_(&find_dataset_type(options.type, "data.type")) {
  if (options_.num_classes < 2) {
    throw Error("dataset " + options_.root.string() + ": at least two classes are needed");
  }
  const std::string& type = options_.type;
  if (!fs::is_directory(options_.root)) {
    throw Error("dataset root " + options_.root.string() + " does not exist" +
                (type == "folder" ? " (run `attnseg synth --out " + options_.root.string() +
                                        "` for the synthetic set)"
                                  : " (where to put " + type + ": data/README.md)"));
  }
  const fs::path& root = options_.root;
  const std::string& split = options_.split;
  auto need_dir = [&](const fs::path& dir) {
    if (!fs::is_directory(dir)) {
      throw Error(type + " dataset: no folder " + dir.string() + " (expected " + type_->layout +
                  ")");
    }
  };
  if (type == "folder" || type == "voc") {
    const fs::path list =
        type == "folder" ? root / split : root / "ImageSets" / "Segmentation" / (split + ".txt");
    names_ = read_split_file(list);
    if (names_.empty()) throw Error("split file " + list.string() + " lists no samples");
    for (const auto& n : names_) {
      if (type == "folder") {
        images_.push_back(root / options_.image_dir / (n + options_.image_suffix));
        masks_.push_back(root / options_.mask_dir / (n + options_.mask_suffix));
      } else {
        images_.push_back(root / "JPEGImages" / (n + ".jpg"));
        masks_.push_back(root / (options_.voc_aug ? "SegmentationClassAug" : "SegmentationClass") /
                         (n + ".png"));
      }
    }
  } else if (type == "cityscapes") {
    const fs::path dir = root / "leftImg8bit" / split;
    need_dir(dir);
    for (const auto& image : files_ending(dir, "_leftImg8bit.png", true)) {
      const std::string city = image.parent_path().filename().string();
      const std::string stem = strip(image.filename().string(), "_leftImg8bit.png");
      names_.push_back(split + "/" + city + "/" + stem);
      images_.push_back(image);
      masks_.push_back(root / "gtFine" / split / city / (stem + "_gtFine_labelIds.png"));
    }
  } else if (type == "ade20k") {
    const fs::path dir = root / "images" / split;
    need_dir(dir);
    for (const auto& image : files_ending(dir, ".jpg", false)) {
      const std::string stem = strip(image.filename().string(), ".jpg");
      names_.push_back(stem);
      images_.push_back(image);
      masks_.push_back(root / "annotations" / split / (stem + ".png"));
    }
  } else if (type == "camvid") {
    const fs::path dir = root / split;
    need_dir(dir);
    for (const auto& image : files_ending(dir, ".png", false)) {
      names_.push_back(strip(image.filename().string(), ".png"));
      images_.push_back(image);
      masks_.push_back(root / (split + "annot") / image.filename());
    }
  } else {
    throw Error("dataset type " + type + " has no layout to read");  // a table entry without code
  }
  if (names_.empty())
    throw Error(type + " dataset " + root.string() + ": split '" + split + "' has no images");
  if (!require_files) return;
  for (size_t i = 0; i < names_.size(); ++i) {
    const std::string missing = missing_file(i);
    if (!missing.empty()) throw Error(missing);
  }
}

std::string FolderDataset::missing_file(size_t index) const {
  if (!fs::exists(images_.at(index))) return "image " + images_[index].string() + " does not exist";
  if (!fs::exists(masks_.at(index))) {
    return "mask " + masks_[index].string() + " (of image " + images_[index].string() +
           ") does not exist";
  }
  return "";
}

Sample FolderDataset::load(size_t index) const {
  const fs::path image_file = image_path(index), mask_file = mask_path(index);
  Sample sample;
  sample.name = names_.at(index);
  cv::Mat bgr = cv::imread(image_file.string(), cv::IMREAD_COLOR);
  if (bgr.empty())
    throw Error("cannot read image " + image_file.string() + " (missing or corrupt)");
  cv::cvtColor(bgr, sample.image, cv::COLOR_BGR2RGB);
  const cv::Mat stored = cv::imread(mask_file.string(), cv::IMREAD_UNCHANGED);
  if (stored.empty())
    throw Error("cannot read mask " + mask_file.string() + " (missing or corrupt)");
  sample.mask = decode_mask(stored, mask_file);
  if (sample.mask.size() != sample.image.size()) {
    throw Error("mask " + mask_file.string() + " is " + std::to_string(sample.mask.cols) + "x" +
                std::to_string(sample.mask.rows) + " but its image is " +
                std::to_string(sample.image.cols) + "x" + std::to_string(sample.image.rows));
  }
  return sample;
}

cv::Mat FolderDataset::decode_mask(const cv::Mat& stored, const fs::path& file) const {
  const std::string& type = options_.type;
  auto at = [](cv::Point p) {
    return " at (" + std::to_string(p.x) + ", " + std::to_string(p.y) + ")";
  };
  if (type == "voc" && stored.channels() == 3 && stored.depth() == CV_8U) {
    // SegmentationClass: palette PNGs, which OpenCV reads as their colours (BGR)
    cv::Mat ids(stored.size(), CV_8UC1);
    for (int y = 0; y < stored.rows; ++y) {
      for (int x = 0; x < stored.cols; ++x) {
        const cv::Vec3b bgr = stored.at<cv::Vec3b>(y, x);
        const cv::Vec3b rgb(bgr[2], bgr[1], bgr[0]);
        const int index = voc_class_of(rgb);
        if (index < 0) {
          throw Error("mask " + file.string() + " holds the colour (" + std::to_string(rgb[0]) +
                      ", " + std::to_string(rgb[1]) + ", " + std::to_string(rgb[2]) + ")" +
                      at({x, y}) +
                      ", which is none of the 21 VOC class colours nor the border colour");
        }
        ids.at<uint8_t>(y, x) = static_cast<uint8_t>(index);
      }
    }
    return ids;
  }
  if (stored.channels() != 1 || stored.depth() != CV_8U) {
    throw Error(
        "mask " + file.string() + " must be a single-channel 8-bit PNG of " +
        (type == "voc" ? std::string("class ids or VOC palette colours") : std::string("labels")) +
        ", got " + std::to_string(stored.channels()) + " channel(s)");
  }
  if (type == "folder") {
    // Any id in [num_classes, 255) is a labelling error, not an ignore label.
    cv::Mat bad = (stored >= options_.num_classes) & (stored != 255);
    if (cv::countNonZero(bad) > 0) {
      cv::Point where;
      cv::minMaxLoc(bad, nullptr, nullptr, nullptr, &where);
      throw Error("mask " + file.string() + " holds label " +
                  std::to_string(stored.at<uint8_t>(where)) + at(where) + "; valid labels are 0.." +
                  std::to_string(options_.num_classes - 1) + " and 255 (ignore)");
    }
    return stored.clone();
  }
  const LabelTable& table = type_->labels;
  cv::Mat ids(stored.size(), CV_8UC1);
  for (int y = 0; y < stored.rows; ++y) {
    const uint8_t* in = stored.ptr<uint8_t>(y);
    uint8_t* out = ids.ptr<uint8_t>(y);
    for (int x = 0; x < stored.cols; ++x) {
      const int16_t id = table[in[x]];
      if (id == kInvalidLabel) {
        throw Error("mask " + file.string() + " holds label " + std::to_string(in[x]) + at({x, y}) +
                    "; " + type + " masks hold " + accepted_values(table));
      }
      out[x] = static_cast<uint8_t>(id);
    }
  }
  return ids;
}

DatasetInfo read_dataset_info(const ConfigNode& data) {
  DatasetInfo info;
  info.type = data.get<std::string>("type", "folder");
  const DatasetType& type = find_dataset_type(info.type, "config key " + data.where("type"));
  if (type.class_names.empty() || data.has("classes")) {
    info.class_names = data.require<std::vector<std::string>>("classes");
  } else {
    info.class_names = type.class_names;
  }
  if (info.class_names.size() < 2 || info.class_names.size() > 255) {
    throw Error("config key " + data.where("classes") + " must list 2 to 255 class names");
  }
  if (!type.class_names.empty() && info.class_names.size() != type.class_names.size()) {
    throw Error("config key " + data.where("classes") + " lists " +
                std::to_string(info.class_names.size()) + " classes; " + type.name + " has " +
                std::to_string(type.class_names.size()) + " (leave the key out for its own names)");
  }
  info.palette = type.palette;
  FolderDatasetOptions base;
  base.type = type.name;
  base.root = data.require<std::string>("root");
  if (type.name == "folder") {
    base.image_dir = data.get<std::string>("image_dir", base.image_dir);
    base.mask_dir = data.get<std::string>("mask_dir", base.mask_dir);
    base.image_suffix = data.get<std::string>("image_suffix", base.image_suffix);
    base.mask_suffix = data.get<std::string>("mask_suffix", base.mask_suffix);
  }

  base.num_classes = static_cast<int64_t>(info.class_names.size());
  info.train = base;
  info.train.split = data.get<std::string>("train_split", type.train_split);
  info.val = base;
  info.val.split = data.get<std::string>("val_split", type.val_split);
  // SBD's masks for training; validation reads the VOC masks as shipped, as mmsegmentation does
  if (type.name == "voc") info.train.voc_aug = data.get<bool>("voc_aug", false);
  return info;
}

}  // namespace attnseg
