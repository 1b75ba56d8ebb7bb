#include "data/dataset.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fstream>

#include "config/config.h"
#include "core/error.h"

namespace attnseg {

namespace fs = std::filesystem;

FolderDataset::FolderDataset(const FolderDatasetOptions& options) : options_(options) {
  if (options_.num_classes < 2) {
    throw Error("dataset " + options_.root.string() + ": at least two classes are needed");
  }
  if (!fs::is_directory(options_.root)) {
    throw Error("dataset root " + options_.root.string() +
                " does not exist (run `attnseg synth --out " + options_.root.string() +
                "` for the synthetic set)");
  }
  const fs::path split = options_.root / options_.split;
  std::ifstream in(split);
  if (!in) throw Error("cannot read split file " + split.string());
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names_.push_back(line);
  }
  if (names_.empty()) throw Error("split file " + split.string() + " lists no samples");
  for (size_t i = 0; i < names_.size(); ++i) {
    if (!fs::exists(image_path(i))) {
      throw Error("image " + image_path(i).string() + " (listed in " + split.string() +
                  ") does not exist");
    }
    if (!fs::exists(mask_path(i))) {
      throw Error("mask " + mask_path(i).string() + " (listed in " + split.string() +
                  ") does not exist");
    }
  }
}

fs::path FolderDataset::image_path(size_t index) const {
  return options_.root / options_.image_dir / (names_.at(index) + options_.image_suffix);
}

fs::path FolderDataset::mask_path(size_t index) const {
  return options_.root / options_.mask_dir / (names_.at(index) + options_.mask_suffix);
}

Sample FolderDataset::load(size_t index) const {
  const fs::path image_file = image_path(index), mask_file = mask_path(index);
  Sample sample;
  sample.name = names_.at(index);
  cv::Mat bgr = cv::imread(image_file.string(), cv::IMREAD_COLOR);
  if (bgr.empty()) throw Error("cannot read image " + image_file.string() + " (missing or corrupt)");
  cv::cvtColor(bgr, sample.image, cv::COLOR_BGR2RGB);
  sample.mask = cv::imread(mask_file.string(), cv::IMREAD_UNCHANGED);
  if (sample.mask.empty()) throw Error("cannot read mask " + mask_file.string() + " (missing or corrupt)");
  if (sample.mask.channels() != 1 || sample.mask.depth() != CV_8U) {
    throw Error("mask " + mask_file.string() + " must be a single-channel 8-bit PNG of class ids, got " +
                std::to_string(sample.mask.channels()) + " channel(s)");
  }
  if (sample.mask.size() != sample.image.size()) {
    throw Error("mask " + mask_file.string() + " is " + std::to_string(sample.mask.cols) + "x" +
                std::to_string(sample.mask.rows) + " but its image is " +
                std::to_string(sample.image.cols) + "x" + std::to_string(sample.image.rows));
  }
  // Any id in [num_classes, 255) is a labelling error, not an ignore label.
  cv::Mat bad = (sample.mask >= options_.num_classes) & (sample.mask != 255);
  if (cv::countNonZero(bad) > 0) {
    cv::Point where;
    cv::minMaxLoc(bad, nullptr, nullptr, nullptr, &where);
    throw Error("mask " + mask_file.string() + " holds label " +
                std::to_string(sample.mask.at<uint8_t>(where)) + " at (" + std::to_string(where.x) +
                ", " + std::to_string(where.y) + "); valid labels are 0.." +
                std::to_string(options_.num_classes - 1) + " and 255 (ignore)");
  }
  return sample;
}

DatasetInfo read_dataset_info(const ConfigNode& data) {
  const std::string type = data.get<std::string>("type", "folder");
  if (type != "folder") {
    throw Error("config key " + data.where("type") + ": unknown dataset type '" + type +
                "'; accepted: folder");
  }
  DatasetInfo info;
  info.class_names = data.require<std::vector<std::string>>("classes");
  if (info.class_names.size() < 2 || info.class_names.size() > 255) {
    throw Error("config key " + data.where("classes") + " must list 2 to 255 class names");
  }
  FolderDatasetOptions base;
  base.root = data.require<std::string>("root");
  base.image_dir = data.get<std::string>("image_dir", base.image_dir);
  base.mask_dir = data.get<std::string>("mask_dir", base.mask_dir);
  base.image_suffix = data.get<std::string>("image_suffix", base.image_suffix);
  base.mask_suffix = data.get<std::string>("mask_suffix", base.mask_suffix);
  base.num_classes = static_cast<int64_t>(info.class_names.size());
  info.train = base;
  info.train.split = data.get<std::string>("train_split", "train.txt");
  info.val = base;
  info.val.split = data.get<std::string>("val_split", "val.txt");
  return info;
}

}  // namespace attnseg
