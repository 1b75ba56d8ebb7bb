#include "engine/trainer.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <regex>
#include <sstream>

#include "core/atomic_file.h"
#include "core/batch_norm.h"
#include "core/error.h"
#include "core/fault.h"
#include "core/labels.h"
#include "core/work_dir_lock.h"
#include "engine/checkpoint.h"
#include "engine/distributed.h"
#include "engine/evaluator.h"
#include "engine/progress.h"

namespace attnseg {
namespace {

namespace fs = std::filesystem;
constexpr const char* kLastCheckpoint = "last_checkpoint";
constexpr const char* kMetricsFile = "metrics.jsonl";

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

std::string last_good_text(const fs::path& last_good) {
  return last_good.empty() ? std::string("none") : last_good.string();
}

// Every parameter finite, in one value read back.
bool weights_finite(const Segmentor& model) {
  std::vector<at::Tensor> all;
  for (const auto& p : model->parameters()) all.push_back(at::isfinite(p).all());
  return at::stack(all).all().item<bool>();
}

}  // namespace

bool LossScaler::unscale_and_update(const std::vector<torch::Tensor>& parameters) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> finite;
  for (const auto& p : parameters) {
    if (!p.grad().defined()) continue;
    p.mutable_grad().div_(scale_);
    finite.push_back(at::isfinite(p.grad()).all());
  }
  const bool ok = finite.empty() || at::stack(finite).all().item<bool>();
  if (!ok) {
    scale_ *= 0.5;
    finite_steps_ = 0;
  } else if (++finite_steps_ >= interval_) {
    scale_ *= 2.0;
    finite_steps_ = 0;
  }
  return ok;
}

TrainingState make_training_state(const Experiment& x, const Runtime& runtime) {
  TrainingState state;
  state.model = build_model(x, runtime);
  const TrainSettings& s = x.train;
  state.optimizer = std::make_unique<torch::optim::SGD>(
      state.model->parameters(),
      torch::optim::SGDOptions(s.lr).momentum(s.momentum).weight_decay(s.weight_decay));
  if (runtime.precision == Precision::fp16) state.scaler.emplace();
  return state;
}

nlohmann::json block_stats(const Segmentor& model) {
  const AttentionHead head = model->head();
  nlohmann::json j = nlohmann::json::object();
  const at::Tensor gate = head->gate();
  if (gate.defined()) {
    j["gate"] = gate.item<double>();
    if (gate.grad().defined()) j["gate_grad"] = gate.grad().item<double>();
  }
  const auto& stats = head->branch_stats();
  if (stats.input_ms.defined()) {
    j["input_rms"] = std::sqrt(stats.input_ms.item<double>());
    j["branch_rms"] = std::sqrt(stats.branch_ms.item<double>());
  }
  // One read of the device for all parameters.
  std::vector<at::Tensor> squares;
  for (const auto& p : head->block()->parameters()) {
    if (p.grad().defined()) squares.push_back(p.grad().to(at::kDouble).pow(2).sum());
  }
  if (!squares.empty()) j["grad_norm"] = std::sqrt(at::stack(squares).sum().item<double>());
  return j;
}

StepLosses train_step(TrainingState& state, const Batch& batch, double lr, const Runtime& runtime,
                      const GradientHook& hook, const SumOverRanks& sum_over_ranks) {
  for (auto& group : state.optimizer->param_groups()) {
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  }
  SegmentorOutput out;
  {
    AutocastGuard autocast(runtime);
    out = state.model->forward(batch.images);
  }
  // The loss in float, outside autocast, whatever precision the logits came in.
  out.logits = out.logits.to(at::kFloat);
  if (out.aux.defined()) out.aux = out.aux.to(at::kFloat);
  at::Tensor pixels;
  if (sum_over_ranks) {
    at::Tensor count = (batch.labels != kIgnoreIndex).sum().to(at::kCPU, at::kDouble).reshape({1});
    sum_over_ranks(count);
    pixels = (count.clamp_min(1) / runtime.world_size).to(out.logits.device(), at::kFloat).reshape({});
  }
  const SegmentorLoss loss = state.model->loss(out, batch.labels, pixels);
  state.optimizer->zero_grad();
  if (state.scaler) {
    (loss.total * state.scaler->scale()).backward();
  } else {
    loss.total.backward();
  }
  if (hook) hook(state.model);
  const bool step = !state.scaler || state.scaler->unscale_and_update(state.model->parameters());
  if (step) state.optimizer->step();
  ++state.iteration;
  auto detached = [](const torch::Tensor& t) { return t.defined() ? t.detach() : torch::Tensor(); };
  return {loss.total.detach(), loss.decode.detach(), detached(loss.aux), detached(loss.block)};
}

CheckpointPolicy::CheckpointPolicy(fs::path work_dir, const TrainSettings& s, const Runtime& runtime)
    : work_dir_(std::move(work_dir)),
      interval_(s.checkpoint_interval),
      keep_(s.keep_checkpoints),
      total_(s.iters),
      writer_(runtime.rank == 0) {}

bool CheckpointPolicy::due(int64_t done) const {
  return (interval_ > 0 && done % interval_ == 0) || done == total_;
}

void CheckpointPolicy::save(const TrainingState& state, const std::string& config_yaml) {
  const fs::path path = work_dir_ / ("iter_" + std::to_string(state.iteration) + ".pt");
  if (writer_) {
    save_checkpoint(path, state.model, state.optimizer.get(), {state.iteration, config_yaml});
    write_text_atomically(work_dir_ / kLastCheckpoint, path.filename().string() + "\n");
  }
  last_good_ = path;
  if (!writer_) return;
  // Retention over every checkpoint in the directory, whichever run of it wrote them.
  const auto all = checkpoints_in(work_dir_);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep_, 1)); i < all.size(); ++i) {
    std::error_code ec;
    if (all[i].second != path) fs::remove(all[i].second, ec);
  }
}

MetricsLog::MetricsLog(const fs::path& file, int64_t start, const Runtime& runtime) {
  if (runtime.rank != 0) return;
  truncate_metrics(file, start);
  out_.emplace(file);
}

void MetricsLog::write(const nlohmann::json& line) {
  if (out_) out_->append(line.dump() + "\n");
}

fs::path latest_checkpoint(const fs::path& work_dir) {
  std::ifstream in(work_dir / kLastCheckpoint);
  std::string name;
  if (!in || !std::getline(in, name) || name.empty()) return {};
  return work_dir / name;
}

std::vector<std::pair<int64_t, fs::path>> checkpoints_in(const fs::path& work_dir) {
  static const std::regex pattern(R"(iter_([0-9]{1,18})\.pt)");
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(work_dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && std::regex_match(name, m, pattern)) {
      found.emplace_back(std::stoll(m[1].str()), entry.path());
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return found;
}

void refuse_earlier_run(const fs::path& work_dir) {
  const auto earlier = checkpoints_in(work_dir);
  if (earlier.empty()) return;
  throw Error("work directory " + work_dir.string() + " holds an earlier run (" + std::to_string(earlier.size()) +
              " checkpoint(s), newest " + earlier.front().second.filename().string() +
              "): --resume continues it; to start over, remove them or choose another --work-dir");
}

fs::path resume_training(TrainingState& state, const fs::path& work_dir) {
  const auto candidates = checkpoints_in(work_dir);
  if (candidates.empty()) return {};
  std::vector<std::string> skipped;
  for (const auto& [n, path] : candidates) {
    try {
      // A checkpoint of another model throws attnseg::Error and stops the run: the directory
      // belongs to another experiment, and an older checkpoint would not be ours either.
      state.iteration = load_checkpoint(path, state.model, state.optimizer.get()).iteration;
    } catch (const UnreadableCheckpoint& e) {
      spdlog::warn("skipping {}: {}", path.filename().string(), e.what());
      skipped.push_back(path.filename().string());
      continue;
    }
    // The unreadable newer ones are set aside, not deleted (they may be worth a look), and
    // out of the way of retention and of the checkpoints this run writes in their place.
    for (const std::string& name : skipped) {
      std::error_code ec;
      fs::rename(work_dir / name, work_dir / (name + ".unreadable"), ec);
      if (!ec) spdlog::warn("moved {} to {}.unreadable", name, name);
    }
    const fs::path named = latest_checkpoint(work_dir);
    if (!named.empty() && named != path) {
      spdlog::warn("{} names {}, but the newest intact checkpoint is {}", kLastCheckpoint,
                   named.filename().string(), path.filename().string());
    }
    return path;
  }
  throw Error("no checkpoint in " + work_dir.string() + " can be read (" + std::to_string(skipped.size()) +
              " tried, newest first: " + skipped.front() + "); move them away to start from iteration 0");
}

TrainResult train(const Experiment& x, const std::string& config_yaml, const Runtime& runtime,
                  const fs::path& work_dir, bool resume, ProcessGroup* group, JobProgress* job) {
  // A group (of one too, when a backend is named) numbers the runtime; without one it is alone.
  if (group ? group->rank() != runtime.rank || group->size() != runtime.world_size : runtime.world_size != 1) {
    throw Error("train: the runtime's rank and world size must be the process group's");
  }
  const TrainSettings& s = x.train;
  TrainResult result;
  result.threads = runtime.threads;
  FolderDataset dataset(x.data.train);
  // A learning curve reads the validation split: opened once, so a missing or empty one stops
  // the run now, not at the first evaluation.
  std::optional<FolderDataset> val;
  // Every rank of a job validates its share of the images.
  if (x.eval.interval > 0) val.emplace(x.data.val);
  TrainingState state = make_training_state(x, runtime);  // a block the runtime cannot run stops here
  // One run per directory; what a killed run left half-written goes before anything is read.
  // Resuming, rank 0 picks the checkpoint (setting aside unreadable ones); the others load the
  // one it names, from the same directory.
  std::unique_ptr<WorkDirLock> lock;
  fs::path last;
  decide_on_rank_zero(group, runtime.rank, [&] {
    lock = claim_work_dir(work_dir, "train");
    if (resume) {
      last = resume_training(state, work_dir);
    } else {
      refuse_earlier_run(work_dir);
    }
  });
  CheckpointPolicy checkpoints(work_dir, s, runtime);
  if (resume) {
    if (group) {
      at::Tensor chosen = at::full({1}, last.empty() ? int64_t{-1} : state.iteration, at::kLong);
      group->broadcast(chosen, 0);
      const int64_t iteration = chosen.item<int64_t>();
      if (runtime.rank != 0 && iteration >= 0) {
        last = work_dir / ("iter_" + std::to_string(iteration) + ".pt");
        if (!fs::exists(last)) {
          throw Error("rank " + std::to_string(runtime.rank) + ": " + last.string() +
                      " (rank 0's checkpoint) is not there: every rank resumes from the same work directory");
        }
        state.iteration = load_checkpoint(last, state.model, state.optimizer.get()).iteration;
      }
    }
    if (last.empty()) {
      spdlog::info("no checkpoint in {}; starting from iteration 0", work_dir.string());
    } else {
      checkpoints.resumed_from(last);
      spdlog::info("resumed from {} at iteration {}", last.string(), state.iteration);
    }
  }
  std::optional<GradientAverager> averager;
  if (group) {
    broadcast_model(*group, state.model);
    averager.emplace(*group, state.model);
    spdlog::info("data-parallel: rank {} of {}, {} gradient bucket(s), batch {} per rank", runtime.rank,
                 runtime.world_size, averager->buckets().size(), s.batch_size / runtime.world_size);
  }
  GradientHook average;
  if (group) average = [&](Segmentor&) { averager->finish(); };
  const SumOverRanks sum_over_ranks = sum_over(group);
  std::optional<BatchNormSync> sync_bn;
  if (group && x.model.sync_bn) sync_bn.emplace(sum_over_ranks);
  const int64_t start = state.iteration;
  if (runtime.rank == 0) write_text_atomically(work_dir / "config.yaml", config_yaml + "\n");
  MetricsLog metrics(work_dir / kMetricsFile, start, runtime);

  spdlog::info("training {} iterations on {} images (batch {}, {} loader workers)", s.iters, dataset.size(),
               s.batch_size, s.workers);
  const bool pin = runtime.cuda();
  Prefetcher<Batch> loader(
      [&](int64_t k) {
        Batch b = make_train_batch(dataset, x.pipeline, x.norm, s.batch_size, s.seed, k, runtime.rank,
                                   runtime.world_size);
        if (pin) b = {b.images.pin_memory(), b.labels.pin_memory()};
        return b;
      },
      start, s.iters, static_cast<int>(s.workers), static_cast<int>(2 * s.workers));
  state.model->train();
  Progress progress(s.iters, start, /*show=*/runtime.rank == 0, "iter", job);
  // The iteration of the first non-finite loss (0: none yet), kept on the device and read
  // only when a line is logged or a checkpoint is due, so no step waits for the device.
  at::Tensor first_nonfinite = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(runtime.device));
  auto stop_if_nonfinite = [&] {
    const int64_t bad = first_nonfinite.item<int64_t>();
    if (bad == 0) return;
    throw Error("loss became non-finite (NaN or infinite) at iteration " + std::to_string(bad) +
                "; training stopped, last good checkpoint: " + last_good_text(checkpoints.last_good()) +
                " (try a lower train.lr)");
  };
  const auto begin = std::chrono::steady_clock::now();
  auto window_begin = begin;
  int64_t window_images = 0;
  double loss_value = 0;
  const fs::path rank_name = "rank" + std::to_string(runtime.rank);  // what ATTNSEG_KILL_AT=step:rank1:N names
  for (int64_t it = start; it < s.iters; ++it) {
    kill_here_if_asked("step", rank_name);
    const double lr = poly_lr(s, it);
    const Batch cpu = loader.next();
    const Batch batch{cpu.images.to(runtime.device, /*non_blocking=*/true),
                      cpu.labels.to(runtime.device, /*non_blocking=*/true)};
    const StepLosses loss = train_step(state, batch, lr, runtime, average, sum_over_ranks);
    if (group) broadcast_buffers(*group, state.model);
    first_nonfinite.masked_fill_(first_nonfinite.eq(0).logical_and(at::isfinite(loss.total).logical_not()), it + 1);
    window_images += s.batch_size;  // the job's images: each rank reads its share of the batch

    const int64_t done = state.iteration;
    if (done % s.log_interval == 0 || done == s.iters) {
      stop_if_nonfinite();
      std::vector<at::Tensor> losses{loss.total.reshape({1}), loss.decode.reshape({1})};
      if (loss.aux.defined()) losses.push_back(loss.aux.reshape({1}));
      if (loss.block.defined()) losses.push_back(loss.block.reshape({1}));
      if (group) {
        // The job's loss: the mean over the ranks of each rank's mean over its share.
        at::Tensor all = at::cat(losses).to(at::kCPU, at::kDouble);
        group->all_reduce_sum(all);
        all.div_(runtime.world_size);
        for (size_t i = 0; i < losses.size(); ++i) losses[i] = all[static_cast<int64_t>(i)];
      }
      loss_value = losses[0].item<double>();
      const auto now = std::chrono::steady_clock::now();
      const double ips = window_images / std::chrono::duration<double>(now - window_begin).count();
      window_begin = now;
      window_images = 0;
      nlohmann::json line{{"iter", done}, {"loss", loss_value}, {"decode_loss", losses[1].item<double>()},
                          {"lr", lr}, {"img_per_s", ips}, {"data_wait_s", loader.wait_seconds()}};
      if (loss.aux.defined()) line["aux_loss"] = losses[2].item<double>();
      if (loss.block.defined()) line["block_loss"] = losses.back().item<double>();
      const nlohmann::json block = block_stats(state.model);
      if (!block.empty()) line["block"] = block;
      metrics.write(line);
      std::ostringstream fields;
      fields.precision(4);
      fields << "loss " << loss_value << " lr " << lr << " " << ips << " img/s";
      progress.update(done, fields.str());
    }
    // The curve's point for `done` goes before the checkpoint of `done`: a run killed between
    // them resumes from an earlier checkpoint, and the MetricsLog drops the point with the rest.
    if (val && (done % x.eval.interval == 0 || done == s.iters)) {
      stop_if_nonfinite();
      const Validation v = validate(state.model, *val, x, runtime, x.eval.subset, sum_over_ranks);
      nlohmann::json iou = nlohmann::json::object();
      for (size_t c = 0; c < x.data.class_names.size(); ++c) {
        iou[x.data.class_names[c]] = std::isnan(v.metrics.iou[c]) ? nlohmann::json(nullptr) : nlohmann::json(v.metrics.iou[c]);
      }
      metrics.write({{"iter", done}, {"val_mIoU", v.metrics.miou}, {"val_IoU", iou}, {"val_images", v.images}});
      spdlog::info("iteration {}: validation mIoU {:.2f} on {} images", done, 100 * v.metrics.miou, v.images);
      window_begin = std::chrono::steady_clock::now();  // images/s counts training steps only
      window_images = 0;
    }
    if (checkpoints.due(done)) {
      stop_if_nonfinite();
      // A finite loss can still leave non-finite weights after the step; never save those.
      if (!weights_finite(state.model)) {
        throw Error("weights became non-finite at iteration " + std::to_string(done) +
                    "; training stopped, last good checkpoint: " + last_good_text(checkpoints.last_good()) +
                    " (try a lower train.lr)");
      }
      checkpoints.save(state, config_yaml);
    }
  }
  progress.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  result.iterations = s.iters;
  // A resumed run with no iteration left has no loss of its own to report.
  result.final_loss = start < s.iters ? loss_value : std::numeric_limits<double>::quiet_NaN();
  result.checkpoint = checkpoints.last_good();
  result.images_per_second = seconds > 0 ? (s.iters - start) * s.batch_size / seconds : 0;  // the job's
  result.data_wait_fraction = seconds > 0 ? loader.wait_seconds() / seconds : 0;
  spdlog::info("trained to iteration {} in {:.1f} s: {:.1f} img/s, loader wait {:.1f}% of the loop",
               s.iters, seconds, result.images_per_second, 100 * result.data_wait_fraction);
  return result;
}

}  // namespace attnseg
