// attnseg as a library: a trained segmentation model behind one class.
//
//   #include <attnseg/segmenter.h>
//   attnseg::Segmenter segmenter("work_dirs/default/config.yaml", "work_dirs/default/iter_2000.pt");
//   cv::Mat labels = segmenter.predict(cv::imread("street.png"));  // CV_8UC1, one class id per pixel
//
// This header and the names in it are the stable interface (find_package(attnseg), target
// attnseg::attnseg); the project's other headers are internal and not installed. Errors (a
// missing or corrupt file, a config key with a bad value, a checkpoint of another model, an
// image the block cannot take) are thrown as std::runtime_error with a one-line message that
// names the file or key.
#pragma once

#include <ATen/core/Tensor.h>
#include <opencv2/core.hpp>

#include <memory>
#include <string>
#include <vector>

namespace attnseg {

// Where and how the model runs. Empty fields keep what the config says.
struct SegmenterOptions {
  std::string device;     // runtime.device: "auto", "cpu", "cuda" or "cuda:N"
  std::string precision;  // runtime.precision: "fp32", "bf16" or "fp16" (fp16 on CUDA only)
  int threads = -1;       // runtime.threads: CPU threads of LibTorch's pool, 0 = every core; -1: the config's
  std::string mode;       // eval.mode: "whole" (one pass) or "slide" (eval.crop_size windows, eval.stride apart)
  std::vector<std::string> overrides;  // any other dotted.key=value, as on attnseg's command line
};

class Segmenter {
 public:
  // Reads the experiment config that trained the model (a run's own config.yaml does) and
  // loads its checkpoint; the model runs in eval mode from then on. The runtime's thread count
  // applies to the whole process (LibTorch has one pool).
  Segmenter(const std::string& config, const std::string& checkpoint, const SegmenterOptions& options = {});
  ~Segmenter();
  Segmenter(Segmenter&&) noexcept;
  Segmenter& operator=(Segmenter&&) noexcept;

  // The class of each pixel of an 8-bit image in OpenCV's channel order (BGR, as cv::imread
  // returns it; grey and BGRA are accepted too): CV_8UC1 of the image's size, values
  // 0 .. class_names().size() - 1.
  cv::Mat predict(const cv::Mat& image);
  // Each class's probability at each pixel: float32 [K, H, W] on the CPU, summing to 1 over K.
  at::Tensor probabilities(const cv::Mat& image);

  // The dataset's class names, in class-id order.
  const std::vector<std::string>& class_names() const;
  // One RGB colour per class id: the dataset's own palette (Cityscapes, VOC, ADE20K, CamVid),
  // else distinct generated colours.
  const std::vector<cv::Vec3b>& palette() const;
  // The block the model hosts ("ccnet") and where it runs ("device cpu, precision fp32, 2 threads, ...").
  std::string block() const;
  std::string runtime() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace attnseg
