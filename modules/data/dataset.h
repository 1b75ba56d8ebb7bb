// The generic folder dataset: images/<name><img_suffix> and masks/<name><mask_suffix>, with a
// split file listing one name per line. Masks are single-channel PNGs of class ids, 255 =
// ignore. Every defect a long run could meet later (missing or unreadable file, mask of
// another size, label outside the classes) is reported with the file's path.
#pragma once

#include <opencv2/core.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace attnseg {

class ConfigNode;

struct Sample {
  cv::Mat image;  // 8-bit, 3 channels, RGB
  cv::Mat mask;   // 8-bit class ids, 255 = ignore
  std::string name;
};

struct FolderDatasetOptions {
  std::filesystem::path root;
  std::string split;  // file name under root, e.g. "train.txt"
  std::string image_dir = "images";
  std::string mask_dir = "masks";
  std::string image_suffix = ".png";
  std::string mask_suffix = ".png";
  int64_t num_classes = 0;
};

class FolderDataset {
 public:
  // Reads the split file and checks that every listed image and mask exists.
  explicit FolderDataset(const FolderDatasetOptions& options);
  size_t size() const { return names_.size(); }
  const std::string& name(size_t index) const { return names_.at(index); }
  std::filesystem::path image_path(size_t index) const;
  std::filesystem::path mask_path(size_t index) const;
  // Loads and validates one sample; throws attnseg::Error naming the file at fault.
  Sample load(size_t index) const;
  const FolderDatasetOptions& options() const { return options_; }

 private:
  FolderDatasetOptions options_;
  std::vector<std::string> names_;
};

struct DatasetInfo {
  std::vector<std::string> class_names;
  FolderDatasetOptions train, val;
};

// Reads the `data` section: type (folder), root, classes, splits and file naming.
DatasetInfo read_dataset_info(const ConfigNode& data);

}  // namespace attnseg
