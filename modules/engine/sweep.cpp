#include "engine/sweep.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "attention/registry.h"
#include "core/error.h"
#include "core/runtime.h"
#include "engine/bench.h"
#include "engine/checkpoint.h"
#include "engine/counters.h"
#include "engine/evaluator.h"
#include "engine/experiment.h"
#include "engine/timing.h"
#include "engine/trainer.h"

namespace attnseg {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Run {
  std::string block;
  uint64_t seed = 0;
  fs::path dir;
  Config config;
};

// Info-level lines of the trainer and evaluator would bury the sweep's own; they are kept
// for warnings while a run trains, unless the user asked for more (debug or trace).
class QuietRun {
 public:
  QuietRun() : level_(spdlog::get_level()) {
    if (level_ == spdlog::level::info) spdlog::set_level(spdlog::level::warn);
  }
  ~QuietRun() { spdlog::set_level(level_); }

 private:
  spdlog::level::level_enum level_;
};

// The run's eval.json, training it first (or resuming it) when it is missing.
nlohmann::json finished_run(const Run& run) {
  const fs::path eval_file = run.dir / "eval.json", config_file = run.dir / "config.yaml";
  const std::string config_yaml = run.config.dump() + "\n";
  if (fs::exists(config_file) && read_text(config_file) != config_yaml) {
    throw Error(run.dir.string() + " holds a run made with another config (its config.yaml differs): remove it "
                "or give the sweep another --work-dir");
  }
  if (fs::exists(eval_file)) {
    nlohmann::json eval;
    try {
      eval = nlohmann::json::parse(read_text(eval_file));
      (void)eval.at("mIoU").get<double>();
    } catch (const std::exception& e) {
      throw Error(eval_file.string() + " is not an evaluation report (" + one_line(e.what()) +
                  "): remove it to evaluate again");
    }
    spdlog::info("{} seed {}: finished earlier, mIoU {:.2f} ({}), not retrained", run.block, run.seed,
                 100 * eval["mIoU"].get<double>(), eval_file.string());
    return eval;
  }
  const fs::path last = latest_checkpoint(run.dir);
  const bool resume = !last.empty();
  spdlog::info("{} seed {}: {} in {}", run.block, run.seed,
               resume ? "resuming from " + last.filename().string() : std::string("training"), run.dir.string());
  const auto start = std::chrono::steady_clock::now();
  TrainResult trained;
  EvalResult result;
  {
    QuietRun quiet;
    trained = train(run.config, run.dir, resume);
    result = evaluate(run.config, trained.checkpoint);
  }
  const nlohmann::json eval = report_json(result);
  write_text_atomically(eval_file, eval.dump(2) + "\n");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("{} seed {}: {} iterations, final loss {:.4f}, mIoU {:.2f}, {:.0f} s", run.block, run.seed,
               trained.iterations, trained.final_loss, 100 * result.metrics.miou, seconds);
  return eval;
}

struct Subject {
  std::string block;
  Segmentor model{nullptr};
  at::Tensor image;  // the first validation image, normalised, [1, 3, H, W]
  Timing best{std::numeric_limits<double>::infinity(), 0, 0};
  std::vector<std::array<int64_t, 2>> block_sizes;
  std::vector<double> block_best;  // fastest median per size; NaN where the block cannot run
  std::string note;
};

}  // namespace

Leaderboard run_sweep(const SweepSettings& s) {
  if (s.blocks.empty()) throw Error("sweep: no block to train (give --blocks LIST or 'all')");
  if (s.seeds < 1) throw Error("sweep: --seeds must be at least 1");
  // Every run's config is read and validated before anything is trained.
  const Experiment first = read_experiment(Config::load(s.config, s.overrides));
  {
    FolderDataset train_split(first.data.train), val_split(first.data.val);
    if (val_split.size() == 0) throw Error("sweep: the validation split of " + s.config.string() + " is empty");
  }
  std::vector<Run> runs;
  for (const std::string& block : s.blocks) {
    for (int64_t k = 0; k < s.seeds; ++k) {
      Run run;
      run.block = block;
      run.seed = first.train.seed + static_cast<uint64_t>(k);
      run.dir = s.work_dir / block / ("seed" + std::to_string(run.seed));
      std::vector<std::string> overrides = s.overrides;
      overrides.push_back("model.attention.type=" + block);
      overrides.push_back("train.seed=" + std::to_string(run.seed));
      run.config = Config::load(s.config, overrides);
      (void)read_experiment(run.config);
      runs.push_back(run);
    }
  }
  spdlog::info("sweep of {} blocks x {} seed(s) from {} into {}", s.blocks.size(), s.seeds, s.config.string(),
               s.work_dir.string());

  Leaderboard board;
  board.config = s.config.string();
  for (const auto& o : s.overrides) board.overrides += (board.overrides.empty() ? "" : " ") + o;
  board.iterations = first.train.iters;
  board.seeds = s.seeds;
  board.first_seed = first.train.seed;
  board.rounds = s.rounds;
  for (const std::string& block : s.blocks) {
    LeaderboardRow row;
    row.block = block;
    std::vector<std::vector<double>> class_iou;
    for (const Run& run : runs) {
      if (run.block != block) continue;
      const nlohmann::json eval = finished_run(run);
      row.miou.push_back(eval.at("mIoU").get<double>());
      std::vector<double> ious;
      row.class_names.clear();
      for (const auto& c : eval.at("classes")) {
        row.class_names.push_back(c.at("name").get<std::string>());
        ious.push_back(c.at("iou").is_null() ? std::numeric_limits<double>::quiet_NaN() : c.at("iou").get<double>());
      }
      class_iou.push_back(ious);
    }
    for (size_t c = 0; c < row.class_names.size(); ++c) {
      std::vector<double> v;
      for (const auto& ious : class_iou) v.push_back(ious.at(c));
      row.class_iou.push_back(mean(v));
    }
    board.rows.push_back(row);
  }

  // Benchmark: the trained models (first seed) in turn, several rounds, the fastest round of
  // each block kept so a slow spell of the machine does not land on one block only.
  board.threads = set_threads(first.threads);
  std::vector<Subject> subjects;
  for (const Run& run : runs) {
    if (run.seed != first.train.seed) continue;
    Experiment x = read_experiment(run.config);
    Subject subject;
    subject.block = run.block;
    subject.model = x.model;
    load_checkpoint(latest_checkpoint(run.dir), subject.model);
    subject.model->eval();
    FolderDataset val(x.data.val);
    subject.image = image_to_tensor(val.load(0).image, x.norm).unsqueeze(0);
    subjects.push_back(subject);
  }
  board.resolution = {subjects[0].image.size(2), subjects[0].image.size(3)};
  for (size_t i = 0; i < subjects.size(); ++i) {
    Subject& subject = subjects[i];
    LeaderboardRow& row = board.rows[i];
    c10::InferenceMode guard;
    const at::Tensor logits = subject.model->forward(subject.image).logits;
    const AttentionBlock block = subject.model->head()->block();
    board.feature = {logits.size(2), logits.size(3)};
    board.block_channels = subject.model->head()->options.channels();
    row.model_parameters = count_parameters(*subject.model);
    row.block_parameters = count_parameters(*block);
    row.block_macs = block->macs({1, board.block_channels, board.feature[0], board.feature[1]});
    {
      MacCounter counter;
      (void)subject.model->predict(subject.image);
      row.model_macs = counter.macs();
    }
    {
      PeakMemory memory;
      const at::Tensor out = subject.model->predict(subject.image);
      row.peak_bytes = memory.peak_bytes();
    }
    for (int64_t f : {1, 2, 4}) subject.block_sizes.push_back({board.feature[0] * f, board.feature[1] * f});
    subject.block_best.assign(subject.block_sizes.size(), std::numeric_limits<double>::infinity());
  }
  spdlog::info("benchmarking {} models at {}x{}, {} threads, {} rounds", subjects.size(), board.resolution[0],
               board.resolution[1], board.threads, s.rounds);
  for (int64_t round = 0; round < s.rounds; ++round) {
    for (Subject& subject : subjects) {
      const SpeedResult speed = measure_speed(subject.model, subject.image, s.warmup, s.iters);
      if (speed.median_ms < subject.best.median_ms) subject.best = {speed.median_ms, speed.p25_ms, speed.p75_ms};
      c10::InferenceMode guard;
      const AttentionBlock block = subject.model->head()->block();
      for (size_t k = 0; k < subject.block_sizes.size(); ++k) {
        if (std::isnan(subject.block_best[k])) continue;
        const auto& hw = subject.block_sizes[k];
        at::manual_seed(0);
        const at::Tensor x = at::randn({1, board.block_channels, hw[0], hw[1]});
        try {
          const Timing t = time_runs([&] { (void)block->forward(x).sum().item<float>(); }, s.warmup, s.iters);
          subject.block_best[k] = std::min(subject.block_best[k], t.median_ms);
        } catch (const c10::Error& e) {
          subject.block_best[k] = std::numeric_limits<double>::quiet_NaN();
          subject.note += (subject.note.empty() ? "" : "; ") + std::to_string(hw[0]) + "x" + std::to_string(hw[1]) +
                          " not timed: " + one_line(e.what_without_backtrace());
        }
      }
    }
  }
  for (size_t i = 0; i < subjects.size(); ++i) {
    LeaderboardRow& row = board.rows[i];
    const Subject& subject = subjects[i];
    row.median_ms = subject.best.median_ms;
    row.p25_ms = subject.best.p25_ms;
    row.p75_ms = subject.best.p75_ms;
    row.fps = 1000.0 / row.median_ms;
    std::vector<double> tokens, times;
    for (size_t k = 0; k < subject.block_sizes.size(); ++k) {
      if (std::isnan(subject.block_best[k])) continue;
      const double n = static_cast<double>(subject.block_sizes[k][0] * subject.block_sizes[k][1]);
      row.scaling.push_back({n, subject.block_best[k]});
      tokens.push_back(n);
      times.push_back(subject.block_best[k]);
    }
    row.time_exponent = growth_exponent(tokens, times);
    row.note = subject.note;
  }
  std::stable_sort(board.rows.begin(), board.rows.end(),
                   [](const LeaderboardRow& a, const LeaderboardRow& b) { return mean(a.miou) > mean(b.miou); });

  write_text_atomically(s.work_dir / "leaderboard.csv", leaderboard_csv(board));
  write_text_atomically(s.work_dir / "leaderboard.md", leaderboard_markdown(board));
  draw_leaderboard(board, s.work_dir / "leaderboard.png");
  draw_scaling(board, s.work_dir / "scaling.png");
  return board;
}

}  // namespace attnseg
