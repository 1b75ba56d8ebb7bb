#include "engine/experiment.h"

#include <torch/utils.h>

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace attnseg {
namespace {

void positive(const ConfigNode& node, const std::string& key, double value, bool allow_zero = false) {
  if (value < 0 || (!allow_zero && value == 0)) {
    throw Error("config key " + node.where(key) + " must be " +
                (allow_zero ? "zero or positive" : "positive") + ", got " + fmt::format("{}", value));
  }
}

TrainSettings read_train(const ConfigNode& t, const ConfigNode& data) {
  TrainSettings s;
  s.iters = t.require<int64_t>("iters");
  s.lr = t.get<double>("lr", s.lr);
  s.momentum = t.get<double>("momentum", s.momentum);
  s.weight_decay = t.get<double>("weight_decay", s.weight_decay);
  s.power = t.get<double>("power", s.power);
  s.min_lr = t.get<double>("min_lr", s.min_lr);
  s.warmup_iters = t.get<int64_t>("warmup_iters", s.warmup_iters);
  s.warmup_ratio = t.get<double>("warmup_ratio", s.warmup_ratio);
  s.checkpoint_interval = t.get<int64_t>("checkpoint_interval", s.checkpoint_interval);
  s.keep_checkpoints = t.get<int64_t>("keep_checkpoints", s.keep_checkpoints);
  s.log_interval = t.get<int64_t>("log_interval", s.log_interval);
  s.seed = static_cast<uint64_t>(t.get<int64_t>("seed", 0));
  s.batch_size = data.get<int64_t>("batch_size", s.batch_size);
  s.workers = data.get<int64_t>("workers", s.workers);
  t.finish();
  positive(t, "iters", s.iters);
  positive(t, "lr", s.lr);
  positive(t, "momentum", s.momentum, true);
  positive(t, "weight_decay", s.weight_decay, true);
  positive(t, "min_lr", s.min_lr, true);
  positive(t, "warmup_iters", s.warmup_iters, true);
  positive(t, "checkpoint_interval", s.checkpoint_interval, true);
  positive(t, "keep_checkpoints", s.keep_checkpoints);
  positive(t, "log_interval", s.log_interval);
  positive(data, "batch_size", s.batch_size);
  positive(data, "workers", s.workers);
  if (s.warmup_ratio <= 0 || s.warmup_ratio > 1) {
    throw Error("config key " + t.where("warmup_ratio") + " must be in (0, 1]");
  }
  return s;
}

void positive_sizes(const ConfigNode& node, const std::string& key, const std::array<int64_t, 2>& sizes) {
  if (sizes[0] <= 0 || sizes[1] <= 0) {
    throw Error("config key " + node.where(key) + " must hold positive sizes");
  }
}

RuntimeSettings read_runtime(const ConfigNode& r) {
  RuntimeSettings s;
  s.device_key = "config key " + r.where("device");
  s.precision_key = "config key " + r.where("precision");
  s.device = r.get<std::string>("device", s.device);
  check_device_name(s.device, s.device_key);
  s.precision = parse_precision(r.get<std::string>("precision", precision_name(s.precision)), s.precision_key);
  s.threads = static_cast<int>(r.get<int64_t>("threads", 0));
  if (s.threads < 0) throw Error("config key " + r.where("threads") + " must be 0 (all cores) or positive");
  s.dist_backend = r.get<std::string>("dist_backend", s.dist_backend);
  if (s.dist_backend != "auto" && s.dist_backend != "gloo" && s.dist_backend != "nccl") {
    throw Error("config key " + r.where("dist_backend") + " must be auto, gloo or nccl, got '" + s.dist_backend + "'");
  }
  s.dist_timeout_s = r.get<double>("dist_timeout", s.dist_timeout_s);
  if (!std::isfinite(s.dist_timeout_s) || s.dist_timeout_s <= 0) {
    throw Error("config key " + r.where("dist_timeout") + " must be a positive number of seconds");
  }
  r.finish();
  return s;
}

EvalSettings read_eval(const ConfigNode& e, const std::vector<std::string>& class_names) {
  EvalSettings s;
  s.mode = e.get<std::string>("mode", s.mode);
  if (s.mode != "whole" && s.mode != "slide") {
    throw Error("config key " + e.where("mode") + " must be 'whole' or 'slide', got '" + s.mode + "'");
  }
  s.crop_size = e.get_array("crop_size", s.crop_size);
  s.stride = e.get_array("stride", s.stride);
  positive_sizes(e, "crop_size", s.crop_size);
  positive_sizes(e, "stride", s.stride);
  s.flip = e.get<bool>("flip", s.flip);
  s.scale = e.get_array("scale", s.scale);
  check_fit_scale(e, "scale", s.scale);
  s.scales = e.get<std::vector<double>>("scales", s.scales);
  if (s.scales.empty()) throw Error("config key " + e.where("scales") + " must list at least one ratio");
  for (const double r : s.scales) {
    if (!(std::isfinite(r) && r >= 0.0625 && r <= 16)) {
      throw Error("config key " + e.where("scales") + " must hold ratios from 0.0625 to 16 (1 = the image's size)");
    }
  }
  s.speed_warmup = e.get<int64_t>("speed_warmup", s.speed_warmup);
  s.speed_runs = e.get<int64_t>("speed_runs", s.speed_runs);
  s.interval = e.get<int64_t>("interval", s.interval);
  s.subset = e.get<int64_t>("subset", s.subset);
  s.context_classes = e.get<std::vector<std::string>>("context_classes", s.context_classes);
  s.cue_classes = e.get<std::vector<std::string>>("cue_classes", s.cue_classes);
  for (const auto& [key, names] : {std::pair{"context_classes", &s.context_classes}, std::pair{"cue_classes", &s.cue_classes}}) {
    for (const std::string& name : *names) {
      if (std::find(class_names.begin(), class_names.end(), name) == class_names.end()) {
        throw Error("config key " + e.where(key) + " names '" + name + "', which is not one of data.classes");
      }
    }
  }
  s.learned_iou = e.get<double>("learned_iou", s.learned_iou);
  if (!(s.learned_iou > 0 && s.learned_iou <= 100)) {
    throw Error("config key " + e.where("learned_iou") + " must be a percentage in (0, 100]");
  }
  e.finish();
  positive(e, "interval", s.interval, true);
  positive(e, "subset", s.subset, true);
  positive(e, "speed_warmup", s.speed_warmup, true);
  positive(e, "speed_runs", s.speed_runs);
  return s;
}

}  // namespace

Experiment read_experiment(const Config& config) {
  const ConfigNode root = config.root();
  const ConfigNode data = root.child("data");
  const ConfigNode runtime = root.child("runtime");
  Experiment x;
  x.data = read_dataset_info(data);
  x.pipeline = read_train_pipeline(data.child("train_pipeline"));
  x.norm = read_normalization(data);
  x.train = read_train(root.child("train"), data);
  x.eval = read_eval(root.child("eval"), x.data.class_names);
  x.runtime = read_runtime(runtime);
  data.finish();
  x.model = read_model_settings(root.child("model"), static_cast<int64_t>(x.data.class_names.size()));
  root.finish();
  return x;
}

Segmentor build_model(const Experiment& x, const Runtime& runtime) {
  const std::string refusal = runtime_refusal(find_block(x.model.block.name), runtime);
  if (!refusal.empty()) throw Error(refusal);
  torch::manual_seed(x.train.seed);
  Segmentor model = build_segmentor(x.model);
  model->to(runtime.device);
  return model;
}

std::array<int64_t, 2> view_size(const EvalSettings& s, int64_t height, int64_t width, double ratio) {
  const double factor = keep_ratio_factor(height, width, s.scale) * ratio;
  return {std::max<int64_t>(1, std::llround(static_cast<double>(height) * factor)),
          std::max<int64_t>(1, std::llround(static_cast<double>(width) * factor))};
}

std::string fixed_token_refusal(const Experiment& x, bool needs_fixed_tokens, int64_t height, int64_t width) {
  if (!needs_fixed_tokens) return "";
  const auto& crop = x.pipeline.crop_size;
  const bool slide = x.eval.mode == "slide";
  for (const double ratio : x.eval.scales) {
    const auto [sh, sw] = view_size(x.eval, height, width, ratio);
    const int64_t h = slide ? std::min(x.eval.crop_size[0], sh) : sh;
    const int64_t w = slide ? std::min(x.eval.crop_size[1], sw) : sw;
    if (h == crop[0] && w == crop[1]) continue;
    const std::string crop_text = std::to_string(crop[0]) + "x" + std::to_string(crop[1]);
    std::string at;
    if (x.eval.scale[0] > 0) at += fmt::format(" (the image fitted to eval.scale {}x{})", x.eval.scale[0], x.eval.scale[1]);
    if (x.eval.scales.size() > 1 || ratio != 1.0) at += fmt::format(" at eval.scales ratio {}", ratio);
    return "block " + x.model.block.name + " needs the token count it was trained with (crops of " + crop_text +
           "), but inference would run it on " + std::to_string(h) + "x" + std::to_string(w) + at +
           ": set eval.mode=slide and eval.crop_size=[" + std::to_string(crop[0]) + ", " + std::to_string(crop[1]) +
           "]" + (at.empty() ? "" : ", and ratios that keep the image at least that large");
  }
  return "";
}

void check_inference_size(const Experiment& x, int64_t height, int64_t width, const std::string& what) {
  const std::string refusal =
      fixed_token_refusal(x, find_block(x.model.block.name).caps.needs_fixed_tokens, height, width);
  if (!refusal.empty()) throw Error(what + ": " + refusal);
}

double poly_lr(const TrainSettings& s, int64_t iteration) {
  const double progress = std::min(1.0, static_cast<double>(iteration) / s.iters);
  double lr = (s.lr - s.min_lr) * std::pow(1.0 - progress, s.power) + s.min_lr;
  if (iteration < s.warmup_iters) {
    const double k = (1.0 - static_cast<double>(iteration) / s.warmup_iters) * (1.0 - s.warmup_ratio);
    lr *= 1.0 - k;
  }
  return lr;
}

}  // namespace attnseg
