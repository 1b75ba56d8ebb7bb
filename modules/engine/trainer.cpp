#include "engine/trainer.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/optim/sgd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/runtime.h"
#include "data/loader.h"
#include "engine/checkpoint.h"
#include "engine/experiment.h"
#include "engine/progress.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;
constexpr const char* kLastCheckpoint = "last_checkpoint";
constexpr const char* kMetricsFile = "metrics.jsonl";

fs::path checkpoint_name(const fs::path& work_dir, int64_t iteration) {
  return work_dir / ("iter_" + std::to_string(iteration) + ".pt");
}

// Keeps the metrics of iterations up to `iteration` (those a resumed run will not redo).
void truncate_metrics(const fs::path& file, int64_t iteration) {
  std::ifstream in(file);
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded() && j.contains("iter") && j["iter"].get<int64_t>() <= iteration) {
      kept += line + "\n";
    }
  }
  write_text_atomically(file, kept);
}

}  // namespace

fs::path latest_checkpoint(const fs::path& work_dir) {
  std::ifstream in(work_dir / kLastCheckpoint);
  std::string name;
  if (!in || !std::getline(in, name) || name.empty()) return {};
  return work_dir / name;
}

TrainResult train(const Config& config, const fs::path& work_dir, bool resume) {
  Experiment x = read_experiment(config);
  const TrainSettings& s = x.train;
  TrainResult result;
  result.threads = set_threads(x.threads);
  FolderDataset dataset(x.data.train);
  std::error_code ec;
  fs::create_directories(work_dir, ec);
  if (!fs::is_directory(work_dir)) throw Error("cannot create work directory " + work_dir.string());
  const std::string config_yaml = config.dump();
  write_text_atomically(work_dir / "config.yaml", config_yaml + "\n");

  Segmentor model = x.model;
  torch::optim::SGD optimizer(
      model->parameters(),
      torch::optim::SGDOptions(s.lr).momentum(s.momentum).weight_decay(s.weight_decay));

  int64_t start = 0;
  fs::path last_good;
  if (resume) {
    last_good = latest_checkpoint(work_dir);
    if (last_good.empty()) {
      spdlog::info("no checkpoint in {}; starting from iteration 0", work_dir.string());
    } else {
      start = load_checkpoint(last_good, model, &optimizer).iteration;
      spdlog::info("resumed from {} at iteration {}", last_good.string(), start);
    }
  }
  truncate_metrics(work_dir / kMetricsFile, start);
  std::ofstream metrics(work_dir / kMetricsFile, std::ios::app);

  spdlog::info("training {} iterations on {} images ({} threads, batch {}, {} loader workers)",
               s.iters, dataset.size(), result.threads, s.batch_size, s.workers);
  Prefetcher<Batch> loader(
      [&](int64_t k) { return make_train_batch(dataset, x.pipeline, x.norm, s.batch_size, s.seed, k); },
      start, s.iters, static_cast<int>(s.workers), static_cast<int>(2 * s.workers));
  model->train();
  Progress progress(s.iters, start);
  std::deque<fs::path> kept;
  const auto begin = std::chrono::steady_clock::now();
  auto window_begin = begin;
  int64_t window_images = 0;
  double loss_value = 0;
  for (int64_t it = start; it < s.iters; ++it) {
    const double lr = poly_lr(s, it);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
    }
    const Batch batch = loader.next();
    const SegmentorOutput out = model->forward(batch.images);
    const SegmentorLoss loss = model->loss(out, batch.labels);
    loss_value = loss.total.item<double>();
    if (!std::isfinite(loss_value)) {
      throw Error("loss became " + std::string(std::isnan(loss_value) ? "NaN" : "infinite") +
                  " at iteration " + std::to_string(it + 1) + "; training stopped, last good checkpoint: " +
                  (last_good.empty() ? std::string("none") : last_good.string()) +
                  " (try a lower train.lr)");
    }
    optimizer.zero_grad();
    loss.total.backward();
    optimizer.step();
    window_images += s.batch_size;

    const int64_t done = it + 1;
    if (done % s.log_interval == 0 || done == s.iters) {
      const auto now = std::chrono::steady_clock::now();
      const double ips = window_images / std::chrono::duration<double>(now - window_begin).count();
      window_begin = now;
      window_images = 0;
      nlohmann::json line{{"iter", done}, {"loss", loss_value}, {"decode_loss", loss.decode.item<double>()},
                          {"lr", lr}, {"img_per_s", ips}, {"data_wait_s", loader.wait_seconds()}};
      if (loss.aux.defined()) line["aux_loss"] = loss.aux.item<double>();
      metrics << line.dump() << '\n' << std::flush;
      std::ostringstream fields;
      fields.precision(4);
      fields << "loss " << loss_value << " lr " << lr << " " << ips << " img/s";
      progress.update(done, fields.str());
    }
    if ((s.checkpoint_interval > 0 && done % s.checkpoint_interval == 0) || done == s.iters) {
      // A finite loss can still leave non-finite weights after the step; never save those.
      for (const auto& p : model->parameters()) {
        if (!torch::isfinite(p).all().item<bool>()) {
          throw Error("weights became non-finite at iteration " + std::to_string(done) +
                      "; training stopped, last good checkpoint: " +
                      (last_good.empty() ? std::string("none") : last_good.string()) +
                      " (try a lower train.lr)");
        }
      }
      const fs::path path = checkpoint_name(work_dir, done);
      save_checkpoint(path, model, &optimizer, {done, config_yaml});
      write_text_atomically(work_dir / kLastCheckpoint, path.filename().string() + "\n");
      if (!last_good.empty() && last_good != path) kept.push_back(last_good);
      last_good = path;
      while (static_cast<int64_t>(kept.size()) >= s.keep_checkpoints) {
        fs::remove(kept.front(), ec);
        kept.pop_front();
      }
    }
  }
  progress.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  result.iterations = s.iters;
  result.final_loss = loss_value;
  result.checkpoint = last_good;
  result.images_per_second = seconds > 0 ? (s.iters - start) * s.batch_size / seconds : 0;
  result.data_wait_fraction = seconds > 0 ? loader.wait_seconds() / seconds : 0;
  spdlog::info("trained to iteration {} in {:.1f} s: {:.1f} img/s, loader wait {:.1f}% of the loop",
               s.iters, seconds, result.images_per_second, 100 * result.data_wait_fraction);
  return result;
}

}  // namespace attnseg
