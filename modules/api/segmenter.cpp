#include "attnseg/segmenter.h"

#include <c10/util/Exception.h>
#include <opencv2/imgproc.hpp>

#include <stdexcept>
#include <utility>

#include "core/error.h"
#include "engine/inference.h"
#include "engine/predict.h"
#include "engine/visualize.h"

namespace attnseg {

struct Segmenter::Impl {
  std::unique_ptr<Predictor> predictor;
  std::vector<cv::Vec3b> palette;
};

namespace {

// LibTorch's errors span several lines and derive from std::exception only: the interface
// promises one-line std::runtime_errors.
template <typename F>
auto with_one_line_errors(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    throw Error(one_line(e.what_without_backtrace()));
  }
}

cv::Mat segmenter_rgb(const cv::Mat& image) {
  if (image.empty()) throw Error("Segmenter: the image is empty");
  if (image.depth() != CV_8U) throw Error("Segmenter: the image is not 8-bit (convert it with cv::Mat::convertTo)");
  cv::Mat rgb;
  switch (image.channels()) {
    case 1: cv::cvtColor(image, rgb, cv::COLOR_GRAY2RGB); break;
    case 3: cv::cvtColor(image, rgb, cv::COLOR_BGR2RGB); break;
    case 4: cv::cvtColor(image, rgb, cv::COLOR_BGRA2RGB); break;
    default:
      throw Error("Segmenter: the image has " + std::to_string(image.channels()) + " channels (1, 3 or 4 accepted)");
  }
  return rgb;
}

}  // namespace

Segmenter::Segmenter(const std::string& config, const std::string& checkpoint, const SegmenterOptions& options)
    : impl_(std::make_unique<Impl>()) {
  with_one_line_errors([&] {
    std::vector<std::string> overrides = options.overrides;
    if (!options.device.empty()) overrides.push_back("runtime.device=" + options.device);
    if (!options.precision.empty()) overrides.push_back("runtime.precision=" + options.precision);
    if (options.threads >= 0) overrides.push_back("runtime.threads=" + std::to_string(options.threads));
    if (!options.mode.empty()) overrides.push_back("eval.mode=" + options.mode);
    Experiment experiment = read_experiment(Config::load(config, overrides));
    const Runtime runtime = start_runtime(experiment.runtime);
    impl_->palette = class_palette(experiment.data);
    impl_->predictor = std::make_unique<Predictor>(std::move(experiment), runtime, checkpoint);
    return 0;
  });
}

Segmenter::~Segmenter() = default;
Segmenter::Segmenter(Segmenter&&) noexcept = default;
Segmenter& Segmenter::operator=(Segmenter&&) noexcept = default;

cv::Mat Segmenter::predict(const cv::Mat& image) {
  return with_one_line_errors([&] { return class_map(impl_->predictor->scores(segmenter_rgb(image))); });
}

at::Tensor Segmenter::probabilities(const cv::Mat& image) {
  return with_one_line_errors([&] { return class_probabilities(impl_->predictor->scores(segmenter_rgb(image))); });
}

const std::vector<std::string>& Segmenter::class_names() const {
  return impl_->predictor->experiment().data.class_names;
}

const std::vector<cv::Vec3b>& Segmenter::palette() const { return impl_->palette; }

std::string Segmenter::block() const { return impl_->predictor->experiment().model.block.name; }

std::string Segmenter::runtime() const { return describe_runtime(impl_->predictor->runtime()); }

}  // namespace attnseg
