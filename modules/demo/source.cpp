#include "demo/source.h"

#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

bool is_camera_index(const std::string& source) {
  return !source.empty() && source.size() < 4 &&
         std::all_of(source.begin(), source.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class VideoSource : public FrameSource {
 public:
  explicit VideoSource(std::string source) : source_(std::move(source)) {
    camera_ = is_camera_index(source_);
    stream_ = source_.find("://") != std::string::npos;
    const bool sequence = source_.find('%') != std::string::npos;  // img_%04d.png
    if (!camera_ && !stream_ && !sequence && !fs::exists(source_)) {
      throw Error(source_ + ": no such file (give a video file, a camera index or a stream URL)");
    }
    std::error_code ec;
    device_ = fs::is_character_file(source_, ec);  // /dev/video0
    if (!open()) {
      throw Error(source_ + ": cannot open it as " +
                  (camera_ ? std::string("a camera") : std::string("a video file or stream")));
    }
  }
  bool read(cv::Mat& bgr) override { return capture_.read(bgr) && !bgr.empty(); }
  bool reopen() override {
    capture_.release();
    return open();
  }
  bool live() const override { return camera_ || stream_; }
  double fps() const override {
    const double fps = capture_.get(cv::CAP_PROP_FPS);
    return fps > 0 && fps < 1000 ? fps : 25.0;  // image sequences and some streams do not say
  }
  std::string name() const override { return source_; }

 private:
  bool open() {
    // Each back end that fails logs it, some at error level (the image-sequence reader, asked
    // about any file that is not a video: five lines for a corrupt .avi); the caller's Error
    // says it in one line.
    namespace logging = cv::utils::logging;
    const logging::LogLevel level = logging::setLogLevel(logging::LOG_LEVEL_SILENT);
    if (camera_) {
      capture_.open(std::stoi(source_));
    } else if (stream_) {
      capture_.open(source_, cv::CAP_FFMPEG);  // the other back ends would each fail on a URL
    } else if (device_) {
      capture_.open(source_);
    } else {
      // A file or an image sequence: FFmpeg, then OpenCV's own readers, in CAP_ANY's order
      // less GStreamer, which for a file neither can read prints GLib CRITICAL lines of its
      // own, past OpenCV's log level, now and then (a race in its teardown).
      for (const int api : {cv::CAP_FFMPEG, cv::CAP_IMAGES, cv::CAP_OPENCV_MJPEG}) {
        if (capture_.open(source_, api)) break;
      }
    }
    logging::setLogLevel(level);
    return capture_.isOpened();
  }

  std::string source_;
  bool camera_ = false, stream_ = false, device_ = false;
  cv::VideoCapture capture_;
};

}  // namespace

std::unique_ptr<FrameSource> open_video_source(const std::string& source) {
  // OpenCV's back ends warn on stderr about every source they fail to open, and while reading;
  // the Error says what went wrong in one line.
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  setenv("OPENCV_FFMPEG_LOGLEVEL", "-8", /*overwrite=*/0);  // AV_LOG_QUIET, unless the user says

  return std::make_unique<VideoSource>(source);
}

at::Tensor frame_input(const cv::Mat& bgr, const Normalization& norm) {
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return image_to_tensor(rgb, norm).unsqueeze(0);
}

}  // namespace attnseg
