#include "engine/evaluator.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/loader.h"
#include "engine/checkpoint.h"
#include "engine/erf.h"
#include "engine/visualize.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;

struct EvalItem {
  at::Tensor image, label, regions;
  cv::Mat rgb;
  std::string name;
};

constexpr int64_t kErfImages = 4;

void measure_erf(Segmentor& model, const FolderDataset& dataset, const Experiment& x, const Runtime& runtime,
                 EvalResult& result) {
  std::vector<at::Tensor> features;
  for (int64_t k = 0; k < std::min<int64_t>(kErfImages, static_cast<int64_t>(dataset.size())); ++k) {
    const Sample sample = dataset.load(static_cast<size_t>(k));
    const int64_t h = std::min<int64_t>(x.pipeline.crop_size[0], sample.image.rows);
    const int64_t w = std::min<int64_t>(x.pipeline.crop_size[1], sample.image.cols);
    const cv::Rect centre(static_cast<int>((sample.image.cols - w) / 2), static_cast<int>((sample.image.rows - h) / 2),
                          static_cast<int>(w), static_cast<int>(h));
    const at::Tensor image = image_to_tensor(sample.image(centre).clone(), x.norm).unsqueeze(0).to(runtime.device);
    c10::AutoGradMode no_grad(false);
    features.push_back(model->predict_with_block_input(image).block_input);
  }
  if (features.empty()) return;
  result.erf = effective_receptive_field(*model->head()->block(), features);
  result.erf_images = static_cast<int64_t>(features.size());
  result.erf_feature = {features.front().size(2), features.front().size(3)};
}

// Which pixels of the label map `m` hold one of the classes `ids`, as a bool tensor.
at::Tensor pixels_of(const at::Tensor& m, const std::vector<size_t>& ids) {
  at::Tensor in = at::zeros_like(m, m.options().dtype(at::kBool));
  for (size_t id : ids) in |= m.eq(static_cast<int64_t>(id));
  return in;
}

void measure_cue(Segmentor& model, const FolderDataset& dataset, const Experiment& x, const Runtime& runtime,
                 EvalResult& result) {
  if (x.eval.cue_classes.empty() || x.eval.context_classes.empty()) return;
  const std::vector<size_t> cue_ids = class_ids(x.eval.cue_classes, x.data.class_names);
  const std::vector<size_t> context_ids = class_ids(x.eval.context_classes, x.data.class_names);
  double share = 0, area = 0;
  for (size_t k = 0; k < dataset.size() && result.cue_images < kErfImages; ++k) {
    const Sample sample = dataset.load(k);
    const at::Tensor labels = mask_to_tensor(sample.mask);
    const at::Tensor cue = pixels_of(labels, cue_ids), context = pixels_of(labels, context_ids);
    if (!cue.any().item<bool>() || !context.any().item<bool>()) continue;
    c10::AutoGradMode grad(true);
    const at::Tensor image =
        image_to_tensor(sample.image, x.norm).unsqueeze(0).to(runtime.device).set_requires_grad(true);
    const at::Tensor label = labels.masked_fill(context.logical_not(), 0).to(runtime.device);
    // Each context pixel's logit of its own class: what the rule decides.
    const at::Tensor own = model->predict(image).squeeze(0).gather(0, label.unsqueeze(0)).squeeze(0);
    (own * context.to(runtime.device, own.scalar_type())).sum().backward();
    const at::Tensor g = image.grad().abs().sum(at::IntArrayRef{0, 1}).to(at::kCPU, at::kDouble);
    const double total = g.sum().item<double>();
    share += total > 0 ? (g * cue.to(at::kDouble)).sum().item<double>() / total : 0.0;
    area += cue.to(at::kDouble).mean().item<double>();
    ++result.cue_images;
  }
  if (result.cue_images == 0) return;
  result.cue_share = share / static_cast<double>(result.cue_images);
  result.cue_area = area / static_cast<double>(result.cue_images);
}

// The region map of one sample: 8-bit, one channel, the mask's size, ids up to `regions`.
cv::Mat load_region_map(const fs::path& file, const cv::Size& size, size_t regions) {
  if (!fs::exists(file)) throw Error("region map " + file.string() + " does not exist");
  const cv::Mat map = cv::imread(file.string(), cv::IMREAD_UNCHANGED);
  if (map.empty()) throw Error("region map " + file.string() + " cannot be decoded");
  if (map.type() != CV_8UC1) throw Error("region map " + file.string() + " is not a single-channel 8-bit image");
  if (map.size() != size) {
    throw Error("region map " + file.string() + " is " + std::to_string(map.cols) + "x" + std::to_string(map.rows) +
                ", its mask " + std::to_string(size.width) + "x" + std::to_string(size.height));
  }
  double top = 0;
  cv::Point where;
  cv::minMaxLoc(map, nullptr, &top, nullptr, &where);
  if (top > static_cast<double>(regions)) {
    throw Error("region map " + file.string() + " holds region " + std::to_string(static_cast<int>(top)) + " at (" +
                std::to_string(where.x) + ", " + std::to_string(where.y) + "), regions.txt names " +
                std::to_string(regions));
  }
  return map;
}

}  // namespace

std::vector<size_t> class_ids(const std::vector<std::string>& names, const std::vector<std::string>& classes) {
  std::vector<size_t> ids;
  for (const std::string& name : names) {
    ids.push_back(static_cast<size_t>(std::find(classes.begin(), classes.end(), name) - classes.begin()));
  }
  return ids;
}

std::vector<std::string> read_region_names(const fs::path& root) {
  const fs::path list = root / "regions.txt";
  if (!fs::exists(list) || !fs::is_directory(root / "regions")) return {};
  std::vector<std::string> names;
  std::ifstream lines(list);
  if (!lines) throw Error(list.string() + " cannot be read");
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (names.empty()) throw Error(list.string() + " names no region");
  if (names.size() > 254) throw Error(list.string() + " names more than 254 regions");
  return names;
}

EvalResult evaluate(const Experiment& x, const Runtime& runtime, const fs::path& checkpoint,
                    const fs::path& show_dir, const SumOverRanks& sum_over_ranks) {
  FolderDataset dataset(x.data.val);
  Segmentor model = build_model(x, runtime);
  load_checkpoint(checkpoint, model);
  model->eval();
  if (!show_dir.empty()) {
    std::error_code ec;
    fs::create_directories(show_dir, ec);
    if (!fs::is_directory(show_dir)) {
      throw Error("cannot create the overlay directory " + show_dir.string() + (ec ? ": " + ec.message() : ""));
    }
  }
  const auto palette = class_palette(x.data);
  const int64_t num_classes = static_cast<int64_t>(x.data.class_names.size());
  ConfusionMatrix confusion(num_classes);
  const std::vector<std::string> region_names = read_region_names(x.data.val.root);
  // One matrix each (copies of one would share its tensor).
  std::vector<ConfusionMatrix> region_confusion;
  for (size_t r = 0; r < region_names.size(); ++r) region_confusion.emplace_back(num_classes);
  // This rank's images: r, r + W, ... below the split's size (all of them in one process).
  const int64_t ranks = runtime.world_size, size = static_cast<int64_t>(dataset.size());
  const int64_t mine = (size - runtime.rank + ranks - 1) / ranks;  // 0 for a rank past the last image
  Prefetcher<EvalItem> loader(
      [&](int64_t j) {
        const int64_t k = runtime.rank + j * ranks;
        Sample sample = dataset.load(static_cast<size_t>(k));
        at::Tensor image = image_to_tensor(sample.image, x.norm).unsqueeze(0);
        if (runtime.cuda()) image = image.pin_memory();
        at::Tensor regions;
        if (!region_names.empty()) {
          regions = mask_to_tensor(load_region_map(x.data.val.root / "regions" / (sample.name + ".png"),
                                                   sample.mask.size(), region_names.size()));
        }
        return EvalItem{image, mask_to_tensor(sample.mask), regions, sample.image, sample.name};
      },
      0, mine, static_cast<int>(x.train.workers), static_cast<int>(2 * x.train.workers));
  EvalResult result;
  at::Tensor first_image;
  {
    c10::InferenceMode guard;
    while (!loader.done()) {
      EvalItem item = loader.next();
      check_inference_size(x, item.image.size(2), item.image.size(3), "validation image " + item.name);
      const at::Tensor image = item.image.to(runtime.device, /*non_blocking=*/true);
      if (!first_image.defined()) first_image = image;
      const at::Tensor pred = segment(model, image, x.eval, runtime).argmax(1).squeeze(0);
      confusion.update(pred, item.label);
      for (size_t r = 0; r < region_confusion.size(); ++r) {
        const at::Tensor outside = item.regions.ne(static_cast<int64_t>(r + 1));
        region_confusion[r].update(pred, item.label.masked_fill(outside.to(item.label.device()), 255));
      }
      if (!show_dir.empty()) {
        const at::Tensor p8 = pred.to(at::kCPU, at::kByte).contiguous();
        const cv::Mat labels(static_cast<int>(p8.size(0)), static_cast<int>(p8.size(1)), CV_8UC1,
                             p8.data_ptr<uint8_t>());
        write_png_atomically(show_dir / (item.name + ".png"), overlay_bgr(item.rgb, labels, palette, 0.5));
      }
      ++result.images;
    }
  }
  result.confusion = confusion.matrix().to(at::kCPU).clone();
  std::vector<at::Tensor> region_matrices;
  for (const ConfusionMatrix& m : region_confusion) region_matrices.push_back(m.matrix().to(at::kCPU).clone());
  if (sum_over_ranks) {
    sum_over_ranks(result.confusion);
    for (at::Tensor& m : region_matrices) sum_over_ranks(m);
    at::Tensor images = at::full({1}, result.images, at::kLong);
    sum_over_ranks(images);
    result.images = images.item<int64_t>();
  }
  result.metrics = compute_metrics(result.confusion);
  result.class_names = x.data.class_names;
  result.checkpoint = checkpoint.string();
  result.inference = x.eval;
  // The classes a region's IoU averages.
  std::vector<size_t> scored = class_ids(x.eval.context_classes, x.data.class_names);
  if (scored.empty()) {
    for (size_t c = 0; c < x.data.class_names.size(); ++c) scored.push_back(c);
  }
  for (size_t c : scored) result.region_classes.push_back(x.data.class_names[c]);
  for (size_t r = 0; r < region_confusion.size(); ++r) {
    const at::Tensor& m = region_matrices[r];
    const SegMetrics metrics = compute_metrics(m);
    RegionScore score{region_names[r], m.sum().item<int64_t>(), 0, {}};
    double sum = 0;
    int defined = 0;
    for (size_t c : scored) {
      score.class_iou.push_back(metrics.iou[c]);
      if (!std::isnan(metrics.iou[c])) sum += metrics.iou[c], ++defined;
    }
    score.iou = defined > 0 ? sum / defined : std::numeric_limits<double>::quiet_NaN();
    result.regions.push_back(score);
  }
  if (runtime.rank == 0) {
    // One forward at the size the model sees of the first image (eval.scale fits it first).
    const at::Tensor timed = resized(first_image, view_size(x.eval, first_image.size(2), first_image.size(3), 1.0));
    result.speed = measure_speed(model, timed, x.eval.speed_warmup, x.eval.speed_runs, runtime);
    if (forwards_per_image(x.eval, first_image.size(2), first_image.size(3)) > 1) {
      result.inference_speed =
          measure_inference_speed(model, first_image, x.eval, x.eval.speed_warmup, x.eval.speed_runs, runtime);
    }
    measure_erf(model, dataset, x, runtime, result);
    measure_cue(model, dataset, x, runtime, result);
  }
  return result;
}

Validation validate(Segmentor& model, const FolderDataset& dataset, const Experiment& x, const Runtime& runtime,
                    int64_t limit, const SumOverRanks& sum_over_ranks) {
  const int64_t count = limit > 0 ? std::min<int64_t>(limit, static_cast<int64_t>(dataset.size()))
                                  : static_cast<int64_t>(dataset.size());
  const bool was_training = model->is_training();
  model->eval();
  ConfusionMatrix confusion(static_cast<int64_t>(x.data.class_names.size()));
  {
    c10::InferenceMode guard;
    for (int64_t k = runtime.rank; k < count; k += runtime.world_size) {
      const Sample sample = dataset.load(static_cast<size_t>(k));
      check_inference_size(x, sample.image.rows, sample.image.cols, "validation image " + sample.name);
      const at::Tensor image = image_to_tensor(sample.image, x.norm).unsqueeze(0).to(runtime.device);
      confusion.update(segment(model, image, x.eval, runtime).argmax(1).squeeze(0), mask_to_tensor(sample.mask));
    }
  }
  model->train(was_training);
  at::Tensor matrix = confusion.matrix().to(at::kCPU).clone();
  if (sum_over_ranks) sum_over_ranks(matrix);
  return {compute_metrics(matrix), count, matrix};
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
  const std::string how = describe_inference(r.inference);
  if (how != describe_inference(EvalSettings{})) out += how + "\n";  // said when not one whole-image view
  std::snprintf(line, sizeof(line),
                "speed at %lldx%lld, batch 1, %s %s, %d threads: median %.2f ms (p25 %.2f, p75 %.2f), %.1f FPS\n",
                static_cast<long long>(r.speed.resolution[0]), static_cast<long long>(r.speed.resolution[1]),
                r.speed.device.c_str(), r.speed.precision.c_str(), r.speed.threads, r.speed.median_ms, r.speed.p25_ms,
                r.speed.p75_ms, r.speed.fps);
  out += line;
  if (r.inference_speed) {
    const SpeedResult& s = *r.inference_speed;
    std::snprintf(line, sizeof(line),
                  "inference as evaluated, %lld forwards per %lldx%lld image: median %.2f ms (p25 %.2f, p75 %.2f), "
                  "%.1f images/s\n",
                  static_cast<long long>(s.forwards), static_cast<long long>(s.resolution[0]),
                  static_cast<long long>(s.resolution[1]), s.median_ms, s.p25_ms, s.p75_ms, s.fps);
    out += line;
  }
  if (!r.regions.empty()) {
    std::string classes;
    for (size_t c = 0; c < r.region_classes.size(); ++c) classes += (c == 0 ? "" : ", ") + r.region_classes[c];
    out += "IoU of " + classes + " by region:";
    for (const RegionScore& s : r.regions) out += "  " + s.name + " " + pct(s.iou).substr(pct(s.iou).find_first_not_of(' '));
    out += "\n";
  }
  if (r.cue_images > 0) {
    std::snprintf(line, sizeof(line),
                  "cue influence: %.2f%% of the input gradient of the context classes' outputs falls on the cue "
                  "(%.1f%% of the pixels; %lld images)\n",
                  100 * r.cue_share, 100 * r.cue_area, static_cast<long long>(r.cue_images));
    out += line;
  }
  if (r.erf_images > 0) {
    std::snprintf(line, sizeof(line),
                  "effective receptive field of the block: %.1f%% of its %lldx%lld input map (5 positions, %lld images, "
                  "gradient above 1%% of the largest elsewhere)\n",
                  100 * r.erf, static_cast<long long>(r.erf_feature[0]), static_cast<long long>(r.erf_feature[1]),
                  static_cast<long long>(r.erf_images));
    out += line;
  }
  return out;
}

nlohmann::json report_json(const EvalResult& r) {
  auto num = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  nlohmann::json classes = nlohmann::json::array();
  for (size_t c = 0; c < r.class_names.size(); ++c) {
    classes.push_back({{"name", r.class_names[c]}, {"iou", num(r.metrics.iou[c])}, {"acc", num(r.metrics.acc[c])}});
  }
  // Which class was taken for which: rows are the ground truth, columns the prediction.
  nlohmann::json confusion = nlohmann::json::array();
  if (r.confusion.defined()) {
    const at::Tensor m = r.confusion.to(at::kLong).contiguous();
    const auto a = m.accessor<int64_t, 2>();
    for (int64_t i = 0; i < m.size(0); ++i) {
      std::vector<int64_t> row(a[i].data(), a[i].data() + m.size(1));
      confusion.push_back(row);
    }
  }
  nlohmann::json regions = nlohmann::json::array();
  for (const RegionScore& s : r.regions) {
    nlohmann::json classes_there = nlohmann::json::object();
    for (size_t c = 0; c < r.region_classes.size(); ++c) classes_there[r.region_classes[c]] = num(s.class_iou[c]);
    regions.push_back({{"name", s.name}, {"pixels", s.pixels}, {"iou", num(s.iou)}, {"classes", classes_there}});
  }
  nlohmann::json inference = {{"mode", r.inference.mode},
                               {"scale", r.inference.scale},
                               {"flip", r.inference.flip},
                               {"scales", r.inference.scales}};
  if (r.inference.mode == "slide") {
    inference["crop_size"] = r.inference.crop_size;
    inference["stride"] = r.inference.stride;
  }
  nlohmann::json inference_speed = nullptr;  // null when the inference is one forward
  if (r.inference_speed) {
    const SpeedResult& s = *r.inference_speed;
    inference_speed = {{"median_ms", s.median_ms}, {"p25_ms", s.p25_ms},     {"p75_ms", s.p75_ms},
                       {"images_per_s", s.fps},    {"forwards", s.forwards}, {"height", s.resolution[0]},
                       {"width", s.resolution[1]}};
  }
  return {{"checkpoint", r.checkpoint},
          {"images", r.images},
          {"inference", inference},
          {"aAcc", num(r.metrics.aacc)},
          {"mIoU", num(r.metrics.miou)},
          {"mAcc", num(r.metrics.macc)},
          {"classes", classes},
          {"confusion", {{"rows", "ground truth"}, {"columns", "prediction"}, {"pixels", confusion}}},
          {"regions", regions},
          {"cue",
           {{"share", r.cue_images > 0 ? num(r.cue_share) : nlohmann::json(nullptr)},
            {"area", r.cue_images > 0 ? num(r.cue_area) : nlohmann::json(nullptr)},
            {"images", r.cue_images}}},
          {"erf",
           {{"share", r.erf_images > 0 ? num(r.erf) : nlohmann::json(nullptr)},
            {"images", r.erf_images},
            {"height", r.erf_feature[0]},
            {"width", r.erf_feature[1]}}},
          {"speed",
           {{"median_ms", r.speed.median_ms},
            {"p25_ms", r.speed.p25_ms},
            {"p75_ms", r.speed.p75_ms},
            {"fps", r.speed.fps},
            {"height", r.speed.resolution[0]},
            {"width", r.speed.resolution[1]},
            {"threads", r.speed.threads},
            {"device", r.speed.device},
            {"precision", r.speed.precision}}},
          {"inference_speed", inference_speed}};
}

}  // namespace attnseg
