// A segmentation dataset in the layout it ships in (data/dataset_types.h): the generic folder
// (images/<name><img_suffix> and masks/<name><mask_suffix>, a split file listing one name per
// line, masks of class ids with 255 = ignore), Cityscapes, Pascal VOC, ADE20K or CamVid, whose
// stored labels are mapped to class ids on loading. Every defect a long run could meet later
// (missing or unreadable file, mask of another size, a label the dataset never stores) is
// reported with the file's path.
#pragma once

#include <opencv2/core.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace attnseg {

class ConfigNode;
struct DatasetType;

struct Sample {
  cv::Mat image;  // 8-bit, 3 channels, RGB
  cv::Mat mask;   // 8-bit class ids, 255 = ignore
  std::string name;
};

struct FolderDatasetOptions {
  std::filesystem::path root;
  // folder: the split file under root ("train.txt"); voc: ImageSets/Segmentation/<split>.txt;
  // cityscapes, ade20k, camvid: the split's folder ("train", "training", ...)
  std::string split;
  std::string image_dir = "images";  // the folder type's naming
  std::string mask_dir = "masks";
  std::string image_suffix = ".png";
  std::string mask_suffix = ".png";
  int64_t num_classes = 0;
  std::string type = "folder";  // a name of dataset_types()
  bool voc_aug = false;  // voc: masks from SBD's SegmentationClassAug (class ids) instead (training)
};

class FolderDataset {
 public:
  // Lists the split's samples; with `require_files` every image and mask must exist (else an
  // Error names the first missing one).
  explicit FolderDataset(const FolderDatasetOptions& options, bool require_files = true);
  size_t size() const { return names_.size(); }
  const std::string& name(size_t index) const { return names_.at(index); }
  const std::filesystem::path& image_path(size_t index) const { return images_.at(index); }
  const std::filesystem::path& mask_path(size_t index) const { return masks_.at(index); }
  // "image/mask FILE does not exist" for a sample whose file is missing, else empty.
  std::string missing_file(size_t index) const;
  // Loads and validates one sample; throws attnseg::Error naming the file at fault.
  Sample load(size_t index) const;
  // A mask as stored (read unchanged) to class ids, 255 = ignore; throws an Error naming
  // `file`, the first value the dataset never stores and where it is.
  cv::Mat decode_mask(const cv::Mat& stored, const std::filesystem::path& file) const;
  const FolderDatasetOptions& options() const { return options_; }

 private:
  FolderDatasetOptions options_;
  const DatasetType* type_;  // options_.type, resolved once
  std::vector<std::string> names_;
  std::vector<std::filesystem::path> images_, masks_;
};

struct DatasetInfo {
  std::string type = "folder";
  std::vector<std::string> class_names;
  std::vector<cv::Vec3b> palette;  // RGB per class: the dataset's own; empty for `folder`
  FolderDatasetOptions train, val;
};

// Reads the `data` section: type, root, classes (given by the type except for `folder`),
// splits and, for `folder`, the file naming.
DatasetInfo read_dataset_info(const ConfigNode& data);

}  // namespace attnseg
