#include "engine/evaluator.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/runtime.h"
#include "data/loader.h"
#include "engine/checkpoint.h"
#include "engine/timing.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

at::Tensor slide(Segmentor& model, const at::Tensor& image, const EvalSettings& s) {
  const int64_t h = image.size(2), w = image.size(3);
  const int64_t ch = std::min(s.crop_size[0], h), cw = std::min(s.crop_size[1], w);
  const int64_t rows = std::max<int64_t>(h - ch + s.stride[0] - 1, 0) / s.stride[0] + 1;
  const int64_t cols = std::max<int64_t>(w - cw + s.stride[1] - 1, 0) / s.stride[1] + 1;
  at::Tensor sum = at::zeros({1, model->num_classes(), h, w}, image.options());
  at::Tensor count = at::zeros({1, 1, h, w}, image.options());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t y2 = std::min(r * s.stride[0] + ch, h), x2 = std::min(c * s.stride[1] + cw, w);
      const int64_t y1 = std::max<int64_t>(y2 - ch, 0), x1 = std::max<int64_t>(x2 - cw, 0);
      const at::Tensor crop = image.slice(2, y1, y2).slice(3, x1, x2);
      sum.slice(2, y1, y2).slice(3, x1, x2) += model->predict(crop);
      count.slice(2, y1, y2).slice(3, x1, x2) += 1;
    }
  }
  return sum / count;
}

struct EvalItem {
  at::Tensor image, label;
  cv::Mat rgb;
  std::string name;
};

}  // namespace

at::Tensor segment(Segmentor& model, const at::Tensor& image, const EvalSettings& settings) {
  auto run = [&](const at::Tensor& x) {
    return settings.mode == "slide" ? slide(model, x, settings) : model->predict(x);
  };
  at::Tensor logits = run(image);
  if (settings.flip) logits = (logits + run(image.flip({3})).flip({3})) / 2;
  return logits;
}

SpeedResult measure_speed(Segmentor& model, const at::Tensor& image, int64_t warmup, int64_t runs) {
  c10::InferenceMode guard;
  model->eval();
  const Timing t = time_runs(
      [&] {
        const at::Tensor out = model->predict(image);
        (void)out.sum().item<float>();  // forces completion on asynchronous devices
      },
      warmup, runs);
  SpeedResult r;
  r.median_ms = t.median_ms;
  r.p25_ms = t.p25_ms;
  r.p75_ms = t.p75_ms;
  r.fps = 1000.0 / r.median_ms;
  r.resolution = {image.size(2), image.size(3)};
  r.threads = at::get_num_threads();
  return r;
}

std::vector<cv::Vec3b> default_palette(size_t classes) {
  static const std::vector<cv::Vec3b> fixed{
      {0, 0, 0},     {230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
      {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}, {210, 245, 60},
      {250, 190, 212}, {0, 128, 128}, {220, 190, 255}, {170, 110, 40}, {255, 250, 200},
      {128, 0, 0},   {170, 255, 195}, {128, 128, 0}, {255, 215, 180}, {0, 0, 128}};
  std::vector<cv::Vec3b> palette;
  Rng rng(0xC0104);
  for (size_t i = 0; i < classes; ++i) {
    palette.push_back(i < fixed.size() ? fixed[i]
                                       : cv::Vec3b(static_cast<uint8_t>(rng.integer(0, 255)),
                                                   static_cast<uint8_t>(rng.integer(0, 255)),
                                                   static_cast<uint8_t>(rng.integer(0, 255))));
  }
  return palette;
}

std::vector<cv::Vec3b> class_palette(const DatasetInfo& data) {
  return data.palette.empty() ? default_palette(data.class_names.size()) : data.palette;
}

cv::Mat overlay(const cv::Mat& rgb, const cv::Mat& labels, const std::vector<cv::Vec3b>& palette,
                double opacity) {
  cv::Mat colour(rgb.size(), CV_8UC3);
  for (int y = 0; y < labels.rows; ++y) {
    for (int x = 0; x < labels.cols; ++x) {
      const uint8_t k = labels.at<uint8_t>(y, x);
      colour.at<cv::Vec3b>(y, x) = k < palette.size() ? palette[k] : cv::Vec3b(0, 0, 0);
    }
  }
  cv::Mat out;
  cv::addWeighted(rgb, 1.0 - opacity, colour, opacity, 0.0, out);
  return out;
}

EvalResult evaluate(const Config& config, const fs::path& checkpoint, const fs::path& show_dir) {
  Experiment x = read_experiment(config);
  set_threads(x.threads);
  FolderDataset dataset(x.data.val);
  Segmentor model = x.model;
  load_checkpoint(checkpoint, model);
  model->eval();
  if (!show_dir.empty()) {
    std::error_code ec;
    fs::create_directories(show_dir, ec);
    if (!fs::is_directory(show_dir)) throw Error("cannot create --show-dir " + show_dir.string());
  }
  const auto palette = class_palette(x.data);
  ConfusionMatrix confusion(static_cast<int64_t>(x.data.class_names.size()));
  Prefetcher<EvalItem> loader(
      [&](int64_t k) {
        Sample sample = dataset.load(static_cast<size_t>(k));
        return EvalItem{image_to_tensor(sample.image, x.norm).unsqueeze(0), mask_to_tensor(sample.mask),
                        sample.image, sample.name};
      },
      0, static_cast<int64_t>(dataset.size()), static_cast<int>(x.train.workers),
      static_cast<int>(2 * x.train.workers));
  EvalResult result;
  at::Tensor first_image;
  {
    c10::InferenceMode guard;
    while (!loader.done()) {
      EvalItem item = loader.next();
      if (!first_image.defined()) first_image = item.image;
      const at::Tensor pred = segment(model, item.image, x.eval).argmax(1).squeeze(0);
      confusion.update(pred, item.label);
      if (!show_dir.empty()) {
        const at::Tensor p8 = pred.to(at::kByte).contiguous();
        const cv::Mat labels(static_cast<int>(p8.size(0)), static_cast<int>(p8.size(1)), CV_8UC1,
                             p8.data_ptr<uint8_t>());
        cv::Mat bgr;
        cv::cvtColor(overlay(item.rgb, labels, palette, 0.5), bgr, cv::COLOR_RGB2BGR);
        write_png_atomically(show_dir / (item.name + ".png"), bgr);
      }
      ++result.images;
    }
  }
  result.metrics = compute_metrics(confusion.matrix());
  result.class_names = x.data.class_names;
  result.checkpoint = checkpoint.string();
  result.speed = measure_speed(model, first_image, x.eval.speed_warmup, x.eval.speed_runs);
  return result;
}

std::string format_report(const EvalResult& r) {
  auto pct = [](double v) {
    char buf[16];
    if (std::isnan(v)) return std::string("   nan");
    std::snprintf(buf, sizeof(buf), "%6.2f", 100.0 * v);
    return std::string(buf);
  };
  size_t width = 5;
  for (const auto& n : r.class_names) width = std::max(width, n.size());
  std::string out = "+" + std::string(width + 2, '-') + "+--------+--------+\n";
  char line[256];
  std::snprintf(line, sizeof(line), "| %-*s |  IoU   |  Acc   |\n", static_cast<int>(width), "class");
  out += line + ("+" + std::string(width + 2, '-') + "+--------+--------+\n");
  for (size_t c = 0; c < r.class_names.size(); ++c) {
    std::snprintf(line, sizeof(line), "| %-*s | %s | %s |\n", static_cast<int>(width),
                  r.class_names[c].c_str(), pct(r.metrics.iou[c]).c_str(), pct(r.metrics.acc[c]).c_str());
    out += line;
  }
  out += "+" + std::string(width + 2, '-') + "+--------+--------+\n";
  std::snprintf(line, sizeof(line), "images %lld  aAcc %s  mIoU %s  mAcc %s\n",
                static_cast<long long>(r.images), pct(r.metrics.aacc).c_str(), pct(r.metrics.miou).c_str(),
                pct(r.metrics.macc).c_str());
  out += line;
  std::snprintf(line, sizeof(line),
                "speed at %lldx%lld, batch 1, %d threads: median %.2f ms (p25 %.2f, p75 %.2f), %.1f FPS\n",
                static_cast<long long>(r.speed.resolution[0]), static_cast<long long>(r.speed.resolution[1]),
                r.speed.threads, r.speed.median_ms, r.speed.p25_ms, r.speed.p75_ms, r.speed.fps);
  out += line;
  return out;
}

nlohmann::json report_json(const EvalResult& r) {
  auto num = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  nlohmann::json classes = nlohmann::json::array();
  for (size_t c = 0; c < r.class_names.size(); ++c) {
    classes.push_back({{"name", r.class_names[c]}, {"iou", num(r.metrics.iou[c])}, {"acc", num(r.metrics.acc[c])}});
  }
  return {{"checkpoint", r.checkpoint},
          {"images", r.images},
          {"aAcc", num(r.metrics.aacc)},
          {"mIoU", num(r.metrics.miou)},
          {"mAcc", num(r.metrics.macc)},
          {"classes", classes},
          {"speed",
           {{"median_ms", r.speed.median_ms},
            {"p25_ms", r.speed.p25_ms},
            {"p75_ms", r.speed.p75_ms},
            {"fps", r.speed.fps},
            {"height", r.speed.resolution[0]},
            {"width", r.speed.resolution[1]},
            {"threads", r.speed.threads}}}};
}

}  // namespace attnseg
