#include "engine/demo.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <torch/autograd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "attention/registry.h"
#include "core/error.h"
#include "core/runtime.h"
#include "data/transforms.h"
#include "engine/checkpoint.h"
#include "engine/evaluator.h"
#include "engine/experiment.h"

namespace attnseg {

at::Tensor block_influence(Segmentor& model, const at::Tensor& image, int64_t row, int64_t col) {
  model->eval();
  at::Tensor input;
  {
    torch::NoGradGuard no_grad;
    input = model->head()->block_input(model->backbone()->forward(image).stage4);
  }
  const int64_t h = input.size(2), w = input.size(3);
  if (row < 0 || row >= h || col < 0 || col >= w) {
    throw Error("influence: pixel (" + std::to_string(row) + ", " + std::to_string(col) +
                ") is outside the " + std::to_string(h) + "x" + std::to_string(w) + " feature map");
  }
  input = input.detach().requires_grad_();
  const at::Tensor out = model->head()->block()->forward(input);
  const at::Tensor grad = torch::autograd::grad({out.select(2, row).select(2, col).sum()}, {input},
                                                /*grad_outputs=*/{}, /*retain_graph=*/false,
                                                /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!grad.defined()) return at::zeros({h, w});
  const at::Tensor map = grad.abs().sum(1)[0];
  const double top = map.max().item<double>();
  return top > 0 ? map / top : map;
}

}  // namespace attnseg

namespace attnseg {

namespace {

bool is_camera_index(const std::string& source) {
  return !source.empty() && source.size() < 4 &&
         std::all_of(source.begin(), source.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int fourcc_for(const std::filesystem::path& output) {
  const std::string ext = output.extension().string();
  if (ext == ".mp4") return cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  if (ext == ".avi") return cv::VideoWriter::fourcc('M', 'J', 'P', 'G');
  throw Error("--output " + output.string() + ": give a .mp4 or .avi file");
}

// Legend of class colours and names, the block's name and the timing, top left.
void annotate(cv::Mat& bgr, const std::vector<std::string>& classes, const std::vector<cv::Vec3b>& palette,
              const std::string& block, double ms, double fps) {
  const double scale = std::max(0.35, bgr.rows / 900.0);
  const int line = static_cast<int>(22 * scale / 0.5);
  char text[128];
  std::snprintf(text, sizeof(text), "%s  %.1f ms  %.1f FPS", block.c_str(), ms, fps);
  auto put = [&](const std::string& t, cv::Point at, const cv::Scalar& colour) {
    cv::putText(bgr, t, at, cv::FONT_HERSHEY_SIMPLEX, scale, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
    cv::putText(bgr, t, at, cv::FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv::LINE_AA);
  };
  put(text, {8, line}, cv::Scalar(255, 255, 255));
  for (size_t c = 0; c < classes.size(); ++c) {
    const cv::Vec3b rgb = palette[c];
    const cv::Scalar colour(rgb[2], rgb[1], rgb[0]);
    const int y = line * static_cast<int>(c + 2);
    cv::rectangle(bgr, {8, y - line / 2 - 2}, {8 + line / 2, y - 2}, colour, cv::FILLED);
    put(classes[c], {14 + line / 2, y}, cv::Scalar(255, 255, 255));
  }
}

}  // namespace

DemoStats run_demo_headless(const DemoSettings& s) {
  namespace fs = std::filesystem;
  const Config config = Config::load(s.config);
  Experiment x = read_experiment(config);
  set_threads(x.threads);
  Segmentor model = x.model;
  load_checkpoint(s.checkpoint, model);
  model->eval();
  const std::string block = find_block(config.root().child("model").child("attention").get<std::string>("type", "none")).name;

  // OpenCV's back ends warn on stderr about every source they fail to open; the one line
  // below says what went wrong.
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  cv::VideoCapture capture;
  const bool camera = is_camera_index(s.source);
  if (!camera && s.source.find("://") == std::string::npos && !fs::exists(s.source)) {
    throw Error("--source " + s.source + ": no such file (give a video file, a camera index or a stream URL)");
  }
  const bool opened = camera ? capture.open(std::stoi(s.source)) : capture.open(s.source);
  if (!opened || !capture.isOpened()) {
    throw Error("--source " + s.source + ": cannot open it as " +
                (camera ? std::string("a camera") : std::string("a video file or stream")));
  }
  cv::Mat frame;
  if (!capture.read(frame) || frame.empty()) throw Error("--source " + s.source + ": no frame could be read");

  const fs::path output(s.output);
  const int fourcc = fourcc_for(output);
  const fs::path tmp = output.parent_path() / (output.stem().string() + ".tmp" + output.extension().string());
  double fps = capture.get(cv::CAP_PROP_FPS);
  if (!(fps > 0 && fps < 1000)) fps = 25;
  cv::VideoWriter writer(tmp.string(), fourcc, fps, frame.size());
  if (!writer.isOpened()) throw Error("--output " + output.string() + ": cannot write a video there");

  const auto palette = default_palette(x.data.class_names.size());
  DemoStats stats;
  stats.width = frame.cols;
  stats.height = frame.rows;
  std::vector<double> ms;  // kept sorted: the running median is read, not re-sorted, per frame
  auto median = [&ms] {
    const size_t n = ms.size();
    return n % 2 == 1 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  };
  const auto begin = std::chrono::steady_clock::now();
  std::string failure;
  do {
    if (frame.size() != cv::Size(stats.width, stats.height)) {
      failure = "--source " + s.source + ": frame " + std::to_string(stats.frames + 1) + " changed size";
      break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    cv::Mat rgb;
    cv::cvtColor(frame, rgb, cv::COLOR_BGR2RGB);
    at::Tensor pred;
    {
      c10::InferenceMode guard;
      pred = segment(model, image_to_tensor(rgb, x.norm).unsqueeze(0), x.eval).argmax(1).squeeze(0)
                 .to(at::kByte).contiguous();
    }
    const cv::Mat labels(static_cast<int>(pred.size(0)), static_cast<int>(pred.size(1)), CV_8UC1,
                         pred.data_ptr<uint8_t>());
    cv::Mat bgr;
    cv::cvtColor(overlay(rgb, labels, palette, s.opacity), bgr, cv::COLOR_RGB2BGR);
    const double frame_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ms.insert(std::upper_bound(ms.begin(), ms.end(), frame_ms), frame_ms);
    annotate(bgr, x.data.class_names, palette, block, frame_ms, 1000.0 / median());
    writer.write(bgr);
    ++stats.frames;
  } while ((s.max_frames <= 0 || stats.frames < s.max_frames) && capture.read(frame) && !frame.empty());
  writer.release();
  std::error_code ec;
  fs::rename(tmp, output, ec);
  if (ec) throw Error("--output " + output.string() + ": " + ec.message());
  if (!failure.empty()) throw Error(failure + " (the " + std::to_string(stats.frames) + " frames before it are in " + output.string() + ")");
  stats.median_ms = median();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return stats;
}

}  // namespace attnseg
